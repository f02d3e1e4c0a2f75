#include "load/report_fields.h"

#include <cstddef>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"

namespace troupe {

void AppendJsonString(std::string& out, absl::string_view s) {
  out.push_back('"');
  for (const char ch : s) {
    const auto u = static_cast<unsigned char>(ch);
    switch (ch) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      default:
        if (u < 0x20 || u == 0x7f) {
          absl::StrAppendFormat(&out, "\\u%04x", u);
        } else {
          out.push_back(ch);  // UTF-8 passes through unchanged.
        }
    }
  }
  out.push_back('"');
}

void AppendCsvField(std::string& out, absl::string_view s) {
  if (s.find_first_of(",\"\r\n") == absl::string_view::npos) {
    out.append(s.data(), s.size());
    return;
  }
  out.push_back('"');
  for (const char ch : s) {
    if (ch == '"') out.push_back('"');
    out.push_back(ch);
  }
  out.push_back('"');
}

std::string FieldsToJson(const std::vector<ReportField>& fields) {
  // Fields sharing a first path element are adjacent, so one pass can open
  // and close objects.
  std::string out = "{";
  absl::string_view open_object;
  bool first_in_object = true;
  bool first_top = true;
  for (const ReportField& f : fields) {
    const absl::string_view parent = f.path.size() > 1 ? f.path[0] : "";
    if (parent != open_object) {
      if (!open_object.empty()) out.push_back('}');
      open_object = "";
    }
    if (open_object.empty()) {
      if (!first_top) out.push_back(',');
      first_top = false;
      if (!parent.empty()) {
        AppendJsonString(out, parent);
        out += ":{";
        open_object = parent;
        first_in_object = true;
      }
    }
    if (!parent.empty()) {
      if (!first_in_object) out.push_back(',');
      first_in_object = false;
    }
    AppendJsonString(out, f.path.back());
    out.push_back(':');
    out += f.json;
  }
  if (!open_object.empty()) out.push_back('}');
  out += "}\n";
  return out;
}

std::string FieldsToCsv(const std::vector<ReportField>& fields) {
  std::string header;
  std::string values;
  for (size_t i = 0; i < fields.size(); ++i) {
    if (i > 0) {
      header.push_back(',');
      values.push_back(',');
    }
    header += absl::StrJoin(fields[i].path, "_");
    values += fields[i].csv;
  }
  return absl::StrCat(header, "\n", values, "\n");
}

}  // namespace troupe
