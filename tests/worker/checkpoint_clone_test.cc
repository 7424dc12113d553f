// CloneCheckpoint: what a pbt copy's agent takes from the parent's checkpoint folder, on a real
// filesystem.

#include "worker/checkpoint_clone.h"

#include <sys/stat.h>

#include <filesystem>
#include <fstream>
#include <set>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace sweepd::worker {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

class CloneCheckpointTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string pattern = (fs::temp_directory_path() / "clone-XXXXXX").string();
    root_ = mkdtemp(pattern.data());
    fs::create_directories(from());
    fs::create_directories(to());
  }
  void TearDown() override { fs::remove_all(root_); }

  fs::path from() const { return root_ / "parent"; }
  fs::path to() const { return root_ / "copy"; }
  static void Write(const fs::path& path, const std::string& text) {
    fs::create_directories(path.parent_path());
    std::ofstream(path) << text;
  }
  static std::string Read(const fs::path& path) {
    std::ifstream in(path);
    return std::string(std::istreambuf_iterator<char>(in), {});
  }
  std::set<std::string> Names(const fs::path& folder) const {
    std::set<std::string> names;
    for (const auto& e : fs::recursive_directory_iterator(folder)) {
      if (e.is_regular_file()) names.insert(fs::relative(e.path(), folder).string());
    }
    return names;
  }
  static ino_t Inode(const fs::path& path) {
    struct stat st {};
    stat(path.c_str(), &st);
    return st.st_ino;
  }

  fs::path root_;
};

TEST_F(CloneCheckpointTest, TheClientsFilesOfTheStepAreLinkedAndNoOthers) {
  Write(from() / "ckpt-3-checkpoint.pt", "three");
  Write(from() / "ckpt-3-optimizer.pt", "three-opt");
  Write(from() / "ckpt-4-checkpoint.pt", "four");
  Write(from() / "ckpt-4-checkpoint.pt.tmp.77", "half-written");
  auto copied = CloneCheckpoint(from(), to(), 3);
  ASSERT_TRUE(copied.ok()) << copied.status();
  EXPECT_EQ(*copied, 2);
  EXPECT_EQ(Names(to()), (std::set<std::string>{"ckpt-3-checkpoint.pt", "ckpt-3-optimizer.pt"}));
  EXPECT_EQ(Inode(to() / "ckpt-3-checkpoint.pt"), Inode(from() / "ckpt-3-checkpoint.pt"));
  // The parent drops its name for it (it recorded a newer one): the copy's file stays whole.
  fs::remove(from() / "ckpt-3-checkpoint.pt");
  EXPECT_EQ(Read(to() / "ckpt-3-checkpoint.pt"), "three");
  // Done before: nothing more to do, even once the parent's files are gone.
  auto again = CloneCheckpoint(from(), to(), 3);
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(*again, 0);
}

TEST_F(CloneCheckpointTest, AScriptsOwnFilesAreCopiedNotShared) {
  Write(from() / "model.pt", "weights");
  Write(from() / "state" / "optimizer.bin", "moments");
  auto copied = CloneCheckpoint(from(), to(), 7);
  ASSERT_TRUE(copied.ok()) << copied.status();
  EXPECT_EQ(*copied, 2);
  EXPECT_EQ(Names(to()), (std::set<std::string>{"model.pt", "state/optimizer.bin"}));
  // The copy saves over its file in place (torch.save to the same name): the parent's is as it
  // was.
  EXPECT_NE(Inode(to() / "model.pt"), Inode(from() / "model.pt"));
  Write(to() / "model.pt", "the copy's weights");
  EXPECT_EQ(Read(from() / "model.pt"), "weights");
}

TEST_F(CloneCheckpointTest, WhatIsMissingIsNamed) {
  Write(from() / "ckpt-2-checkpoint.pt", "two");
  Write(from() / "ckpt-5-checkpoint.pt", "five");
  auto wrong_step = CloneCheckpoint(from(), to(), 3);
  EXPECT_EQ(wrong_step.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(wrong_step.status().message(), HasSubstr("no checkpoint file of step 3 (ckpt-3-*)"));
  EXPECT_THAT(wrong_step.status().message(), HasSubstr("it has steps 2, 5"));

  auto no_folder = CloneCheckpoint(root_ / "elsewhere", to(), 3);
  EXPECT_EQ(no_folder.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(no_folder.status().message(), HasSubstr("checkpoint: {dir: ...}"));

  fs::create_directories(root_ / "empty");
  auto empty = CloneCheckpoint(root_ / "empty", to(), 3);
  EXPECT_EQ(empty.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(empty.status().message(), HasSubstr("no checkpoint files in"));
}

}  // namespace
}  // namespace sweepd::worker
