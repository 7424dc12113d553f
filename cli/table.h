#pragma once

// Rows of strings printed as an aligned table, CSV (RFC 4180 quoting, LF line ends) or JSON.

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace sweepd::cli {

class Table {
 public:
  explicit Table(std::vector<std::string> header) : header_(std::move(header)) {}

  void AddRow(std::vector<std::string> row) { rows_.push_back(std::move(row)); }

  // Columns padded to their widest cell; values longer than max_cell are cut with "...".
  std::string ToText(size_t max_cell = 40) const;
  std::string ToCsv() const;

 private:
  std::vector<std::string> header_;
  std::vector<std::vector<std::string>> rows_;
};

// A JSON value as a table cell: strings bare, everything else as compact JSON.
std::string CellText(const nlohmann::ordered_json& value);

}  // namespace sweepd::cli
