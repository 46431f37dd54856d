#include "http/h2_server.h"

#include <gtest/gtest.h>

namespace sluice::http {
namespace {

TEST(DecodeBase64Url, DecodesTheHttp2SettingsFieldAndRefusesWhatIsNotBase64Url) {
  // curl's HTTP2-Settings: SETTINGS_MAX_CONCURRENT_STREAMS=100, INITIAL_WINDOW_SIZE=10 MiB,
  // ENABLE_PUSH=0.
  const auto payload = decode_base64url("AAMAAABkAAQAoAAAAAIAAAAA");
  ASSERT_TRUE(payload);
  EXPECT_EQ(*payload, std::string("\x00\x03\x00\x00\x00\x64\x00\x04\x00\xa0\x00\x00\x00\x02\x00"
                                  "\x00\x00\x00",
                                  18));
  EXPECT_EQ(decode_base64url(""), std::string());
  EXPECT_EQ(decode_base64url("-_8"), std::string("\xfb\xff", 2));  // the URL-safe letters
  EXPECT_EQ(decode_base64url("AA=="), std::string("\0", 1));       // padding tolerated
  EXPECT_FALSE(decode_base64url("AA+/"));                          // standard base64 is not
  EXPECT_FALSE(decode_base64url("A"));                             // no whole byte
  EXPECT_FALSE(decode_base64url("AA AA"));
}

}  // namespace
}  // namespace sluice::http
