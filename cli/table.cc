#include "cli/table.h"

#include <algorithm>

#include "absl/strings/str_cat.h"

namespace sweepd::cli {
namespace {

std::string Cut(const std::string& s, size_t max) {
  if (s.size() <= max) return s;
  return s.substr(0, max - 3) + "...";
}

// RFC 4180: a field with a comma, quote, line break or tab is quoted, quotes doubled. Other
// control characters (NUL, ESC, ...) have no place in CSV (readers stop at a NUL, a terminal
// obeys an ESC): each becomes U+FFFD. Fields with leading or trailing spaces are quoted so
// readers that trim keep them.
std::string CsvField(const std::string& s) {
  bool quote = !s.empty() && (s.front() == ' ' || s.back() == ' ');
  std::string out;
  for (char c : s) {
    const auto u = static_cast<unsigned char>(c);
    if (c == ',' || c == '"' || c == '\n' || c == '\r' || c == '\t') quote = true;
    if ((u < 0x20 && c != '\n' && c != '\r' && c != '\t') || u == 0x7f) {
      out += "\xEF\xBF\xBD";
      continue;
    }
    if (c == '"') out += '"';
    out += c;
  }
  return quote ? "\"" + out + "\"" : out;
}

}  // namespace

std::string Table::ToText(size_t max_cell) const {
  std::vector<size_t> widths(header_.size());
  for (size_t c = 0; c < header_.size(); ++c) widths[c] = header_[c].size();
  for (const auto& row : rows_) {
    for (size_t c = 0; c < row.size() && c < widths.size(); ++c) {
      widths[c] = std::max(widths[c], std::min(row[c].size(), max_cell));
    }
  }
  std::string out;
  auto line = [&](const std::vector<std::string>& cells) {
    std::string text;
    for (size_t c = 0; c < widths.size(); ++c) {
      std::string cell = c < cells.size() ? Cut(cells[c], max_cell) : "";
      if (c + 1 < widths.size()) cell.resize(widths[c] + 2, ' ');
      text += cell;
    }
    while (!text.empty() && text.back() == ' ') text.pop_back();
    absl::StrAppend(&out, text, "\n");
  };
  line(header_);
  for (const auto& row : rows_) line(row);
  return out;
}

std::string Table::ToCsv() const {
  std::string out;
  auto line = [&](const std::vector<std::string>& cells) {
    for (size_t c = 0; c < cells.size(); ++c) {
      absl::StrAppend(&out, c > 0 ? "," : "", CsvField(cells[c]));
    }
    out += "\n";
  };
  line(header_);
  for (const auto& row : rows_) line(row);
  return out;
}

std::string CellText(const nlohmann::ordered_json& value) {
  if (value.is_string()) return value.get<std::string>();
  return value.dump();
}

}  // namespace sweepd::cli
