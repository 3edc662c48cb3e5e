// Plain-text tables for CLI and benchmark output: columns sized to their widest cell, numbers
// right-aligned.
#ifndef CLEAVE_COMMON_TEXT_TABLE_H_
#define CLEAVE_COMMON_TEXT_TABLE_H_

#include <string>
#include <vector>

namespace cleave::common {

class TextTable {
 public:
  explicit TextTable(std::vector<std::string> header);

  // Adds a row; REQUIRES: as many cells as the header.
  void AddRow(std::vector<std::string> cells);

  // Returns the table, one line per row, header underlined.
  [[nodiscard]] std::string Render() const;

 private:
  std::vector<std::vector<std::string>> rows_;
};

}  // namespace cleave::common

#endif  // CLEAVE_COMMON_TEXT_TABLE_H_
