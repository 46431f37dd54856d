#include "config/yaml_tree.h"

#include <gtest/gtest.h>

#include <string>

namespace sluice::config {
namespace {

YamlNode root(const YamlResult& r, size_t i = 0) {
  return r.stream && i < r.stream->documents.size() ? r.stream->documents[i] : YamlNode();
}

TEST(YamlTree, MapsSequencesScalarsAndTheirLines) {
  const YamlResult r = parse_yaml(
      "# comment\n"
      "a: 1\n"
      "b:\n"
      "  - x\n"
      "  - 'quoted'\n"
      "c: {d: [1, 2]}\n"
      "---\n"
      "second: ~\n");
  ASSERT_TRUE(r.stream) << r.error;
  ASSERT_EQ(r.stream->documents.size(), 2u);
  const YamlNode doc = root(r);
  EXPECT_TRUE(doc.is_map());
  EXPECT_EQ(doc.line(), 2);  // an implicit block mapping starts at its first key
  EXPECT_EQ(doc.get("a").text(), "1");
  EXPECT_TRUE(doc.get("a").plain());
  EXPECT_EQ(doc.get("a").line(), 2);
  const YamlNode b = doc.get("b");
  ASSERT_TRUE(b.is_sequence());
  ASSERT_EQ(b.size(), 2u);
  EXPECT_EQ(b.line(), 4);
  EXPECT_EQ(b.items()[1].text(), "quoted");
  EXPECT_FALSE(b.items()[1].plain());
  EXPECT_EQ(b.items()[1].line(), 5);
  EXPECT_EQ(doc.get("c").get("d").items()[1].text(), "2");
  EXPECT_EQ(doc.get("c").line(), 6);
  EXPECT_TRUE(root(r, 1).get("second").is_null());
  EXPECT_EQ(root(r, 1).line(), 8);
}

TEST(YamlTree, MissingAndWrongShapesAreValuesNotErrors) {
  const YamlResult r = parse_yaml("metadata: foo\nlist: [a]\n");
  ASSERT_TRUE(r.stream) << r.error;
  const YamlNode doc = root(r);
  EXPECT_FALSE(doc.get("nope"));
  EXPECT_FALSE(doc.get("metadata").get("name"));  // a scalar has no keys
  EXPECT_EQ(doc.get("nope").line(), 1);
  EXPECT_EQ(doc.get("nope").text(), "");
  EXPECT_TRUE(doc.get("metadata").items().empty());
  EXPECT_TRUE(doc.get("list").entries().empty());
  EXPECT_EQ(doc.get("list").text(), "");
}

TEST(YamlTree, NullPlainAndTaggedScalars) {
  const YamlResult r =
      parse_yaml("a:\nb: ~\nc: null\nd: NULL\ne: ''\nf: \"null\"\ng: !!str 5\nh: !v ;;;,;;v\n");
  ASSERT_TRUE(r.stream) << r.error;
  const YamlNode doc = root(r);
  for (const char* k : {"a", "b", "c", "d"}) EXPECT_TRUE(doc.get(k).is_null()) << k;
  for (const char* k : {"e", "f", "g", "h"}) {
    EXPECT_TRUE(doc.get(k).is_scalar()) << k;
    EXPECT_FALSE(doc.get(k).plain()) << k;  // quoted or tagged: a string, never a number
  }
  EXPECT_EQ(doc.get("h").text(), ";;;,;;v");
}

TEST(YamlTree, ScalarTextHasEscapesAndFoldingResolved) {
  const std::string long_text(10000, 'x');
  const YamlResult r = parse_yaml(
      "a: \"t\\tab \\u00e9\"\nb: 'it''s'\nc: |\n  one\n  two\nd: >\n  one\n  two\n"
      "e: '" +
      long_text + "'\n");
  ASSERT_TRUE(r.stream) << r.error;
  const YamlNode doc = root(r);
  EXPECT_EQ(doc.get("a").text(), "t\tab \xc3\xa9");
  EXPECT_EQ(doc.get("b").text(), "it's");
  EXPECT_EQ(doc.get("c").text(), "one\ntwo\n");
  EXPECT_EQ(doc.get("d").text(), "one two\n");
  EXPECT_EQ(doc.get("e").text(), long_text);
}

// What yaml-cpp 0.7 allocated without bound on (1.9 GB in 4 s) or threw for.
TEST(YamlTree, InputsThatBrokeYamlCppAreSyntaxErrorsOrTrees) {
  for (const char* text : {",", "a: 1\n,\n", "[", "!v ;;;,;;v", "? [a]\n: b\n", "{a: b"}) {
    const YamlResult r = parse_yaml(text);
    EXPECT_TRUE(r.stream || r.error.find("YAML syntax error") == 0) << text << ": " << r.error;
  }
  const YamlResult comma = parse_yaml("a: 1\n,\n");
  ASSERT_FALSE(comma.stream);
  EXPECT_EQ(comma.error_line, 2);
}

TEST(YamlTree, DuplicateKeysAreRefusedWithTheirLine) {
  const YamlResult r = parse_yaml("a: 1\nb: 2\na: 3\n");
  ASSERT_FALSE(r.stream);
  EXPECT_EQ(r.error_line, 3);
  EXPECT_NE(r.error.find("duplicate key \"a\""), std::string::npos) << r.error;
  // The same key in different mappings is fine.
  EXPECT_TRUE(parse_yaml("x: {a: 1}\ny: {a: 2}\n").stream);
}

// Block nesting (indentation) as well as flow nesting: the tree stays shallow enough to
// walk recursively.
TEST(YamlTree, NestingDeeperThanTheLimitIsRefused) {
  std::string block;
  for (int i = 0; i < 100; ++i) block += std::string(i, ' ') + "k:\n";
  const YamlResult r = parse_yaml(block, {.max_depth = 64});
  ASSERT_FALSE(r.stream);
  EXPECT_NE(r.error.find("nested deeper than 64 levels"), std::string::npos) << r.error;
  EXPECT_EQ(r.error_line, 65);
  std::string ok;
  for (int i = 0; i < 60; ++i) ok += std::string(i, ' ') + "k:\n";
  EXPECT_TRUE(parse_yaml(ok, {.max_depth = 64}).stream);
}

TEST(YamlTree, AliasesShareTheirAnchorAndAreBounded) {
  const YamlResult r = parse_yaml("base: &b {port: 8080}\nuse: *b\n");
  ASSERT_TRUE(r.stream) << r.error;
  EXPECT_EQ(root(r).get("use").get("port").text(), "8080");

  // The billion laughs: nine levels of ten aliases each would be 10^9 nodes.
  std::string laughs = "a0: &a0 [lol]\n";
  for (int i = 1; i < 10; ++i) {
    laughs += "a" + std::to_string(i) + ": &a" + std::to_string(i) + " [";
    for (int j = 0; j < 10; ++j) laughs += (j ? ", *a" : "*a") + std::to_string(i - 1);
    laughs += "]\n";
  }
  const YamlResult bomb = parse_yaml(laughs, {.max_alias_expansion = 100'000});
  ASSERT_FALSE(bomb.stream);
  EXPECT_NE(bomb.error.find("aliases expand this document to more than 100000 nodes"),
            std::string::npos)
      << bomb.error;

  // An alias to its own, unfinished anchor would make a cycle.
  const YamlResult cycle = parse_yaml("a: &x [*x]\n");
  EXPECT_FALSE(cycle.stream);
}

}  // namespace
}  // namespace sluice::config
