// SlotTable, the connection table: the entries one reactor owns, by slot,
// with generations.
//
//   slots:  [0: conn g3] [1: free g7] [2: conn g1] ...    free list: {1}
//
// An entry's ConnectionId is {reactor, slot, generation}. Taking an entry
// out bumps its slot's generation, so an id kept by anyone (an epoll token,
// mail in flight, a timer) finds nothing after the entry is gone, never the
// newcomer that reuses the slot. Free slots are reused last-in first-out
// (the warmest memory).
//
// The table is a template over what it holds so that it can hold entries
// with no socket too (the services, core/loop/service.h): it needs only that
// T can be destroyed. `first_slot` offsets every slot number it hands out, so
// two tables of one reactor never issue the same id (kServiceSlot).
//
//   SlotTable<Connection> table(/*reactor=*/0);
//   ConnectionId id = table.Reserve();
//   table.Put(id, std::make_unique<Connection>(...));
//   Connection* conn = table.Find(id);          // nullptr once taken out
//   std::unique_ptr<Connection> gone = table.Take(id);
//
// Thread safety: loop-affine (owning reactor).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <utility>
#include <vector>

#include "core/loop/connection_id.h"

namespace troupe {

template <typename T>
class SlotTable {
 public:
  explicit SlotTable(uint32_t reactor, uint32_t first_slot = 0)
      : reactor_(reactor), first_slot_(first_slot) {}

  // A slot for a new entry, with the id it will have. Put() fills it, or
  // Unreserve() gives it back (setup failed).
  ConnectionId Reserve() {
    uint32_t slot;
    if (!free_.empty()) {
      slot = free_.back();
      free_.pop_back();
    } else {
      slot = static_cast<uint32_t>(slots_.size());
      slots_.emplace_back();
    }
    return ConnectionId{reactor_, slot + first_slot_, slots_[slot].generation};
  }
  void Unreserve(ConnectionId id) { free_.push_back(id.slot - first_slot_); }
  void Put(ConnectionId id, std::unique_ptr<T> entry) {
    slots_[id.slot - first_slot_].entry = std::move(entry);
    ++size_;
  }

  // The entry `id` names, or nullptr if it is gone (or never was).
  T* Find(ConnectionId id) const {
    if (id.reactor != reactor_ || id.slot < first_slot_) return nullptr;
    const uint32_t index = id.slot - first_slot_;
    if (index >= slots_.size()) return nullptr;
    const Slot& slot = slots_[index];
    return slot.generation == id.generation ? slot.entry.get() : nullptr;
  }
  // Removes `id`'s entry and retires its id (the slot's next entry gets a
  // new generation).
  std::unique_ptr<T> Take(ConnectionId id) {
    Slot& slot = slots_[id.slot - first_slot_];
    std::unique_ptr<T> entry = std::move(slot.entry);
    if (++slot.generation == 0) slot.generation = 1;  // 0 means "none"
    free_.push_back(id.slot - first_slot_);
    --size_;
    return entry;
  }

  // Calls `f(T&)` for every entry, in slot order. `f` must not add or take
  // entries.
  template <typename F>
  void ForEach(F&& f) {
    for (Slot& slot : slots_) {
      if (slot.entry != nullptr) f(*slot.entry);
    }
  }

  size_t size() const { return size_; }  // entries held

 private:
  struct Slot {
    std::unique_ptr<T> entry;
    uint32_t generation = 1;
  };

  const uint32_t reactor_;
  const uint32_t first_slot_;
  std::vector<Slot> slots_;
  std::vector<uint32_t> free_;  // reusable slots, last freed on top
  size_t size_ = 0;
};

}  // namespace troupe
