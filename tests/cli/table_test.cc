// CSV output as a spreadsheet or Python's csv module reads it back.

#include "cli/table.h"

#include <string>

#include "gtest/gtest.h"

namespace sweepd::cli {
namespace {

// A metric name with a NUL reached `sweepctl export` as a raw NUL byte (Python's csv module
// stops at it: "line contains NUL"); tabs and padding were written bare.
TEST(TableCsvTest, ControlCharactersNeverReachTheFileRaw) {
  Table table({"trial", std::string("lo\0ss", 5), "note"});
  table.AddRow({"t-1", "0.5", "a\tb"});
  table.AddRow({"t-2", "0.25", " padded "});
  table.AddRow({"t-3", "x\x1b[2Jy", "say \"hi\", twice\nplease"});
  const std::string csv = table.ToCsv();
  EXPECT_EQ(csv.find('\0'), std::string::npos);
  EXPECT_EQ(csv.find('\x1b'), std::string::npos);
  EXPECT_EQ(csv,
            "trial,lo\xEF\xBF\xBDss,note\n"
            "t-1,0.5,\"a\tb\"\n"
            "t-2,0.25,\" padded \"\n"
            "t-3,x\xEF\xBF\xBD[2Jy,\"say \"\"hi\"\", twice\nplease\"\n");
}

}  // namespace
}  // namespace sweepd::cli
