#include "core/file.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

namespace sluice::core {
namespace {

TEST(ReadFile, AWholeFileUpToTheLimit) {
  const std::string path = ::testing::TempDir() + "/read_file_test.txt";
  std::ofstream(path) << "0123456789";
  const FileText exact = read_file(path, 10, "too big");
  ASSERT_TRUE(exact.text) << exact.error;
  EXPECT_EQ(*exact.text, "0123456789");
  const FileText over = read_file(path, 9, "not a test file");
  EXPECT_FALSE(over.text);
  EXPECT_EQ(over.error, "larger than 9 bytes: not a test file");
  std::filesystem::remove(path);
}

// A device that never ends stops at the limit instead of filling memory.
TEST(ReadFile, AnEndlessDeviceIsRefusedAtTheLimit) {
  const FileText zero = read_file("/dev/zero", size_t{1} << 20, "not a Service file");
  EXPECT_FALSE(zero.text);
  EXPECT_EQ(zero.error, "larger than 1 MiB: not a Service file");
}

TEST(ReadFile, WhatCannotBeReadSaysWhy) {
  const FileText missing = read_file("/nonexistent/file", 100, "x");
  EXPECT_FALSE(missing.text);
  EXPECT_EQ(missing.error, "cannot read it: No such file or directory");
  const FileText dir = read_file(::testing::TempDir(), 100, "x");
  EXPECT_FALSE(dir.text);
  EXPECT_EQ(dir.error, "cannot read it: Is a directory");
}

TEST(SizeText, LimitsAsPeopleWriteThem) {
  EXPECT_EQ(size_text(512), "512 bytes");
  EXPECT_EQ(size_text(2048), "2 KiB");
  EXPECT_EQ(size_text(size_t{16} << 20), "16 MiB");
  EXPECT_EQ(size_text(size_t{4} << 30), "4 GiB");
  EXPECT_EQ(size_text(1500), "1500 bytes");
}

}  // namespace
}  // namespace sluice::core
