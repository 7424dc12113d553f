// Tests of the command template: W&B's macros expand to the argv W&B's agent builds, values
// print as Python's str() prints them, and values arrive as single, literal argv items (no shell).

#include "common/command_template.h"

#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "sweepd/v1/resources.pb.h"

namespace sweepd {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::UnorderedElementsAreArray;

// Trial parameters from (name, value JSON) pairs, in order.
std::vector<v1::TrialParam> Params(std::vector<std::pair<std::string, std::string>> pairs) {
  std::vector<v1::TrialParam> out;
  for (auto& [name, value_json] : pairs) {
    v1::TrialParam p;
    p.set_name(name);
    p.set_value_json(value_json);
    out.push_back(std::move(p));
  }
  return out;
}

// Marks a parameter as nested in the run's config (what SetConfigKeys does from a spec).
void Nest(v1::TrialParam& p, std::vector<std::string> keys) {
  for (auto& k : keys) p.add_keys(std::move(k));
}

class CommandTemplateTest : public testing::Test {
 protected:
  CommandTemplateTest() {
    context_.program = "train.py";
    context_.args_json_file = "/var/lib/sweepd/trials/t-7/params.json";
    context_.getenv = [this](const std::string& name) -> std::optional<std::string> {
      lookups_.insert(name);
      auto it = env_.find(name);
      if (it == env_.end()) return std::nullopt;
      return it->second;
    };
  }

  std::vector<std::string> Expand(const std::vector<std::string>& command,
                                  const std::vector<v1::TrialParam>& params) {
    auto argv = ExpandCommand(command, params, context_);
    EXPECT_TRUE(argv.ok()) << argv.status();
    return argv.ok() ? *argv : std::vector<std::string>{};
  }

  CommandContext context_;
  std::map<std::string, std::string> env_ = {{"MASTER_PORT", "29500"}, {"HOST", "node-3"}};
  std::set<std::string> lookups_;
  const std::vector<v1::TrialParam> params_ = Params({{"lr", "0.01"},
                                                      {"batch_size", "32"},
                                                      {"optimizer", "\"adam\""},
                                                      {"use_amp", "true"},
                                                      {"compile", "false"}});
};

TEST_F(CommandTemplateTest, DefaultWandbCommand) {
  EXPECT_THAT(Expand({"${env}", "${interpreter}", "${program}", "${args}"}, params_),
              ElementsAre("/usr/bin/env", "python3", "train.py", "--lr=0.01", "--batch_size=32",
                          "--optimizer=adam", "--use_amp=True", "--compile=False"));
}

// `launcher: torchrun` wraps ${interpreter}; the gang's environment fills in the flags.
TEST_F(CommandTemplateTest, TorchrunLauncherExpandsFromTheGangEnvironment) {
  v1::SweepSpec spec;
  for (const char* t : {"${env}", "${interpreter}", "${program}", "${args}"}) spec.add_command(t);
  spec.set_launcher(v1::LAUNCHER_TORCHRUN);
  env_ = {{"SWEEP_NNODES", "2"},
          {"SWEEP_NODE_RANK", "1"},
          {"SWEEP_NPROC_PER_NODE", "4"},
          {"MASTER_ADDR", "gpu-07"},
          {"MASTER_PORT", "29517"}};
  EXPECT_THAT(Expand(LaunchCommand(spec), Params({{"lr", "0.01"}})),
              ElementsAre("/usr/bin/env", "python3", "-m", "torch.distributed.run", "--nnodes=2",
                          "--node_rank=1", "--nproc_per_node=4", "--master_addr=gpu-07",
                          "--master_port=29517", "--redirects", "1", "--tee", "1", "train.py",
                          "--lr=0.01"));
  spec.set_launcher(v1::LAUNCHER_NONE);
  EXPECT_EQ(LaunchCommand(spec).size(), 4u);
}

TEST_F(CommandTemplateTest, ContextSuppliesEnvInterpreterAndProgram) {
  context_.env = "/bin/env";
  context_.interpreter = "/opt/venv/bin/python";
  context_.program = "/srv/code/train.py";
  EXPECT_THAT(Expand({"${env}", "${interpreter}", "-u", "${program}"}, {}),
              ElementsAre("/bin/env", "/opt/venv/bin/python", "-u", "/srv/code/train.py"));
}

TEST_F(CommandTemplateTest, ArgsNoEqualsGivesTwoArgvItemsPerParameter) {
  EXPECT_THAT(Expand({"${args_no_equals}"}, params_),
              ElementsAre("--lr", "0.01", "--batch_size", "32", "--optimizer", "adam", "--use_amp",
                          "True", "--compile", "False"));
}

TEST_F(CommandTemplateTest, ArgsNoHyphens) {
  EXPECT_THAT(Expand({"python", "main.py", "${args_no_hyphens}"}, params_),
              ElementsAre("python", "main.py", "lr=0.01", "batch_size=32", "optimizer=adam",
                          "use_amp=True", "compile=False"));
}

TEST_F(CommandTemplateTest, ArgsNoBooleanFlagsTurnsTrueIntoAFlagAndDropsFalse) {
  EXPECT_THAT(Expand({"${args_no_boolean_flags}"}, params_),
              ElementsAre("--lr=0.01", "--batch_size=32", "--optimizer=adam", "--use_amp"));
  // Only JSON booleans are flags: the string "true" is a value like any other.
  EXPECT_THAT(Expand({"${args_no_boolean_flags}"}, Params({{"mode", "\"true\""}, {"n", "null"}})),
              ElementsAre("--mode=true", "--n=None"));
}

TEST_F(CommandTemplateTest, HydraAppendAndOverride) {
  const auto params = Params({{"model.lr", "0.001"}, {"trainer.devices", "[0, 1]"}});
  EXPECT_THAT(Expand({"${args_append_hydra}"}, params),
              ElementsAre("+model.lr=0.001", "+trainer.devices=[0, 1]"));
  EXPECT_THAT(Expand({"${args_override_hydra}"}, params),
              ElementsAre("++model.lr=0.001", "++trainer.devices=[0, 1]"));
}

// W&B's agent: `"args_json": [json.dumps(flags_dict)]`, where flags_dict has one key per
// top-level key of the run's config; a nested parameter is a dict under its group's key, a
// top-level dotted name its own key.
TEST_F(CommandTemplateTest, ArgsJsonIsOneItemAsPythonsJsonDumpsWritesIt) {
  auto params = Params({{"optimizer.name", "\"adam\""},
                        {"optimizer.lr", "0.001"},
                        {"optimizer.betas.beta1", "0.9"},
                        {"epochs", "10"},
                        {"data.root", "\"/d\""},
                        {"layers", "[64, 64]"}});
  Nest(params[0], {"optimizer", "name"});
  Nest(params[1], {"optimizer", "lr"});
  Nest(params[2], {"optimizer", "betas", "beta1"});
  const auto argv = Expand({"${program}", "${args_json}"}, params);
  ASSERT_THAT(argv, testing::SizeIs(2));
  // json.dumps({"optimizer": {"name": "adam", "lr": 0.001, "betas": {"beta1": 0.9}},
  //             "epochs": 10, "data.root": "/d", "layers": [64, 64]})
  EXPECT_EQ(argv[1], R"({"optimizer": {"name": "adam", "lr": 0.001, "betas": {"beta1": 0.9}}, )"
                     R"("epochs": 10, "data.root": "/d", "layers": [64, 64]})");
  // params.json holds the same config, compact.
  EXPECT_EQ(nlohmann::json::parse(NestedParamsJson(params)), nlohmann::json::parse(argv[1]));
  EXPECT_THAT(Expand({"${args_json}"}, {}), ElementsAre("{}"));
}

// json.dumps escapes non-ASCII (ensure_ascii) and writes floats as Python's repr.
TEST_F(CommandTemplateTest, ArgsJsonEscapesAsPythonDoes) {
  EXPECT_THAT(Expand({"${args_json}"}, Params({{"name", "\"caf\u00e9 \u2603 \U0001F600\""},
                                               {"tiny", "1e-05"},
                                               {"big", "1e+16"},
                                               {"whole", "100.0"},
                                               {"flag", "true"},
                                               {"none", "null"}})),
              ElementsAre(R"({"name": "caf\u00e9 \u2603 \ud83d\ude00", "tiny": 1e-05, )"
                          R"("big": 1e+16, "whole": 100.0, "flag": true, "none": null})"));
}

// W&B replaces a macro only when it is a whole item: `"--params=${args_json}"` is passed as
// written (wandb_agent.py: `if c.startswith("${") and c.endswith("}")`).
TEST_F(CommandTemplateTest, MacrosInsideALongerItemArePassedAsWritten) {
  EXPECT_THAT(Expand({"--params=${args_json}", "--config=${args_json_file}", "x${program}",
                      "${program}.bak"},
                     Params({{"a", "1"}})),
              ElementsAre("--params=${args_json}", "--config=${args_json_file}", "x${program}",
                          "${program}.bak"));
}

TEST_F(CommandTemplateTest, ArgsJsonFileIsThePath) {
  EXPECT_THAT(Expand({"${args_json_file}"}, params_),
              ElementsAre("/var/lib/sweepd/trials/t-7/params.json"));
}

// W&B's `${args}`: `f"--{param}={value}"` per top-level key of the run's config, the value
// printed with str(): a nested group is one argument holding a Python dict.
TEST_F(CommandTemplateTest, NestedParametersPassOneDictPerTopLevelKey) {
  auto params = Params({{"a.b", "1"}, {"a.c.d", "2"}, {"lr", "0.1"}, {"model.depth", "50"}});
  Nest(params[0], {"a", "b"});
  Nest(params[1], {"a", "c", "d"});
  EXPECT_THAT(Expand({"${args}"}, params),
              ElementsAre("--a={'b': 1, 'c': {'d': 2}}", "--lr=0.1", "--model.depth=50"));
  EXPECT_THAT(Expand({"${args_no_hyphens}"}, params),
              ElementsAre("a={'b': 1, 'c': {'d': 2}}", "lr=0.1", "model.depth=50"));
  EXPECT_THAT(Expand({"${args_no_equals}"}, params),
              ElementsAre("--a", "{'b': 1, 'c': {'d': 2}}", "--lr", "0.1", "--model.depth", "50"));
}

// Hydra style: `model` beside `model.depth`, both top-level names, both passed as written.
TEST_F(CommandTemplateTest, ANameBesideItsDottedChildIsTwoKeys) {
  EXPECT_THAT(
      Expand({"${args_no_hyphens}"}, Params({{"model", "\"resnet\""}, {"model.depth", "50"}})),
      ElementsAre("model=resnet", "model.depth=50"));
}

TEST_F(CommandTemplateTest, EnvvarExpandsInsideAToken) {
  EXPECT_THAT(Expand({"--port=${envvar:MASTER_PORT}", "${envvar:HOST}:${envvar:MASTER_PORT}",
                      "${envvar:HOST}"},
                     {}),
              ElementsAre("--port=29500", "node-3:29500", "node-3"));
  env_["EMPTY"] = "";
  EXPECT_THAT(Expand({"--x=${envvar:EMPTY}"}, {}), ElementsAre("--x="));
}

// W&B: `os.environ.get(m.group(1), m.group(1))`: an unset variable leaves its name.
TEST_F(CommandTemplateTest, AnUnsetEnvvarLeavesItsName) {
  EXPECT_THAT(Expand({"python", "--port=${envvar:NOT_SET}", "${envvar:NOT_SET}"}, {}),
              ElementsAre("python", "--port=NOT_SET", "NOT_SET"));
  CommandContext bare;  // no lookup function at all: every variable is unset
  auto argv = ExpandCommand({"${envvar:HOME}"}, {}, bare);
  ASSERT_TRUE(argv.ok());
  EXPECT_THAT(*argv, ElementsAre("HOME"));
  // Only `[A-Z0-9_]*` names are W&B envvar macros; `${envvar:lower}` is an unknown whole-item
  // macro (nothing), and inside a longer item it is text.
  env_["lower"] = "x";
  EXPECT_THAT(Expand({"${envvar:lower}", "-${envvar:lower}"}, {}), ElementsAre("-${envvar:lower}"));
}

TEST_F(CommandTemplateTest, FixedArgumentsPassThroughUnchanged) {
  EXPECT_THAT(Expand({"${env}", "python3", "${program}", "--config", "your-training-config.json",
                      "$HOME", "$(date)", "{}", "$", "", "${args}"},
                     Params({{"x", "1"}})),
              ElementsAre("/usr/bin/env", "python3", "train.py", "--config",
                          "your-training-config.json", "$HOME", "$(date)", "{}", "$", "", "--x=1"));
}

TEST_F(CommandTemplateTest, NoParametersExpandToNothing) {
  EXPECT_THAT(Expand({"run", "${args}", "${args_no_equals}", "${args_no_hyphens}",
                      "${args_no_boolean_flags}", "${args_append_hydra}", "${args_override_hydra}"},
                     {}),
              ElementsAre("run"));
  EXPECT_THAT(Expand({}, params_), IsEmpty());
}

TEST_F(CommandTemplateTest, HostileValuesArriveLiterallyAsSingleItems) {
  const std::vector<std::pair<std::string, std::string>> hostile = {
      {"spaces", "\"a b  c\""},
      {"quotes", R"("it's \"quoted\"")"},
      {"subshell", "\"$(rm -rf /)\""},
      {"semicolon", "\"x; rm -rf / #\""},
      {"backticks", "\"`id`\""},
      {"newline", "\"line1\\nline2\""},
      {"glob", "\"*\""},
      {"macro", "\"${envvar:SECRET}\""},
      {"flag", "\"--help\""},
  };
  const auto params = Params(hostile);
  EXPECT_THAT(Expand({"${args}"}, params),
              ElementsAre("--spaces=a b  c", "--quotes=it's \"quoted\"", "--subshell=$(rm -rf /)",
                          "--semicolon=x; rm -rf / #", "--backticks=`id`", "--newline=line1\nline2",
                          "--glob=*", "--macro=${envvar:SECRET}", "--flag=--help"));
  EXPECT_THAT(Expand({"${args_no_equals}"}, Params({{"cmd", "\"$(rm -rf /); echo pwned\""}})),
              ElementsAre("--cmd", "$(rm -rf /); echo pwned"));
  // A value that looks like a macro is data: it is never expanded, not even through ${args_json}.
  const auto argv = Expand({"--json=${args_json}", "${args_json}"}, params);
  ASSERT_THAT(argv, testing::SizeIs(2));
  EXPECT_EQ(nlohmann::json::parse(argv[1])["macro"], "${envvar:SECRET}");
  EXPECT_EQ(nlohmann::json::parse(argv[1])["subshell"], "$(rm -rf /)");
  EXPECT_FALSE(lookups_.contains("SECRET"));
}

TEST_F(CommandTemplateTest, ValuesPrintAsPythonStr) {
  EXPECT_THAT(Expand({"${args}"}, Params({{"a", "1e-05"},
                                          {"b", "0.1"},
                                          {"c", "100.0"},
                                          {"d", "[64, 64]"},
                                          {"e", R"({"k": "v"})"},
                                          {"f", "null"},
                                          {"g", "[true, \"x\"]"},
                                          {"h", "-3"}})),
              ElementsAre("--a=1e-05", "--b=0.1", "--c=100.0", "--d=[64, 64]", "--e={'k': 'v'}",
                          "--f=None", "--g=[True, 'x']", "--h=-3"));
}

TEST_F(CommandTemplateTest, ParametersKeepTheirOrder) {
  auto params = Params({{"z", "1"}, {"a", "2"}, {"m.b", "3"}, {"m.a", "4"}, {"q.r", "5"}});
  Nest(params[2], {"m", "b"});
  Nest(params[3], {"m", "a"});
  EXPECT_THAT(Expand({"${args}"}, params),
              ElementsAre("--z=1", "--a=2", "--m={'b': 3, 'a': 4}", "--q.r=5"));
  EXPECT_EQ(NestedParamsJson(params), R"({"z":1,"a":2,"m":{"b":3,"a":4},"q.r":5})");
}

// A very long item is scanned, not matched with a recursive regex (which overflowed the stack).
TEST_F(CommandTemplateTest, AHugeEnvvarItemExpandsWithoutCrashing) {
  const std::string name(900'000, 'A');
  const auto argv = Expand({"${envvar:" + name + "}", "x${envvar:" + name + "y"}, {});
  ASSERT_THAT(argv, testing::SizeIs(2));
  EXPECT_EQ(argv[0], name);  // unset: the bare name, as W&B
  EXPECT_EQ(argv[1].size(), name.size() + 11);
  EXPECT_EQ(CommandTokenWarning("${envvar:" + name + "}"), "");
}

// W&B's agent accepts any command: an unknown whole-item macro (`${project}`, `${entity}`, a
// typo) expands to nothing; a `${` with no `}` is text.
TEST_F(CommandTemplateTest, AnyTemplateExpandsAsWandbsAgentExpandsIt) {
  EXPECT_THAT(
      Expand({"${unknown}", "${project}", "${entity}", "--x=${args}", "${env", "${", "a"}, params_),
      ElementsAre("--x=${args}", "${env", "${", "a"));
}

// ---------------------------------------------------------------------------------------------
// PythonStr: W&B formats ${args} values with Python's str().

TEST(PythonStrTest, Scalars) {
  EXPECT_EQ(PythonStr("true"), "True");
  EXPECT_EQ(PythonStr("false"), "False");
  EXPECT_EQ(PythonStr("null"), "None");
  EXPECT_EQ(PythonStr("\"adam\""), "adam");  // top-level strings print bare
  EXPECT_EQ(PythonStr("\"\""), "");
  EXPECT_EQ(PythonStr("\"it's\""), "it's");
  EXPECT_EQ(PythonStr("32"), "32");
  EXPECT_EQ(PythonStr("-7"), "-7");
  EXPECT_EQ(PythonStr("123456789012345678"), "123456789012345678");
}

TEST(PythonStrTest, FloatsPrintAsPythonReprDoes) {
  // Shortest round-trip digits; exponent form below 1e-4 and from 1e16; ".0" on integral floats.
  EXPECT_EQ(PythonStr("0.1"), "0.1");
  EXPECT_EQ(PythonStr("0.0001"), "0.0001");
  EXPECT_EQ(PythonStr("1e-05"), "1e-05");
  EXPECT_EQ(PythonStr("0.00001"), "1e-05");
  EXPECT_EQ(PythonStr("1.5e-07"), "1.5e-07");
  EXPECT_EQ(PythonStr("100.0"), "100.0");
  EXPECT_EQ(PythonStr("3.0"), "3.0");
  EXPECT_EQ(PythonStr("-0.0"), "-0.0");
  EXPECT_EQ(PythonStr("0.30000000000000004"), "0.30000000000000004");
  EXPECT_EQ(PythonStr("1e16"), "1e+16");
  EXPECT_EQ(PythonStr("1.2345678901234568e+17"), "1.2345678901234568e+17");
  EXPECT_EQ(PythonStr("123456789.125"), "123456789.125");
}

TEST(PythonStrTest, FloatsBetween1e15And1e16PrintInFixedNotation) {
  // Python: str(1e15) == '1000000000000000.0'; it switches to exponents only at 1e16.
  EXPECT_EQ(PythonStr("1e15"), "1000000000000000.0");
  EXPECT_EQ(PythonStr("2.5e15"), "2500000000000000.0");
  EXPECT_EQ(PythonStr("[1e15]"), "[1000000000000000.0]");
}

TEST(PythonStrTest, ListsAndDicts) {
  EXPECT_EQ(PythonStr("[1, \"a\"]"), "[1, 'a']");
  EXPECT_EQ(PythonStr("[]"), "[]");
  EXPECT_EQ(PythonStr("{}"), "{}");
  EXPECT_EQ(PythonStr("[[64, 64], [128]]"), "[[64, 64], [128]]");
  EXPECT_EQ(PythonStr(R"({"k": 1})"), "{'k': 1}");
  EXPECT_EQ(PythonStr(R"({"a": [true, null, 0.5]})"), "{'a': [True, None, 0.5]}");
  EXPECT_EQ(PythonStr(R"(["a\\b"])"), R"(['a\\b'])");
  EXPECT_EQ(PythonStr(R"(["é"])"), "['é']");
}

TEST(PythonStrTest, StringsInsideContainersUsePythonRepr) {
  // Python's repr picks double quotes for a string holding a single quote and no double quote,
  // and escapes control characters; ast.literal_eval must be able to read the result back.
  EXPECT_EQ(PythonStr(R"(["it's"])"), R"(["it's"])");
  EXPECT_EQ(PythonStr(R"(["a'b\"c"])"), R"(['a\'b"c'])");
  EXPECT_EQ(PythonStr(R"(["a\nb"])"), R"(['a\nb'])");
  EXPECT_EQ(PythonStr(R"(["tab\there"])"), R"(['tab\there'])");
}

TEST(PythonStrTest, DictsKeepInsertionOrder) {
  // Python dicts keep insertion order: str({'b': 1, 'a': 2}) == "{'b': 1, 'a': 2}".
  EXPECT_EQ(PythonStr(R"({"b": 1, "a": 2})"), "{'b': 1, 'a': 2}");
}

TEST(PythonStrTest, TextThatIsNotJsonIsReturnedAsIs) {
  EXPECT_EQ(PythonStr("not json"), "not json");
  EXPECT_EQ(PythonStr(""), "");
}

// ---------------------------------------------------------------------------------------------
// CommandTokenWarning: what an item does that its author may not expect (never an error).

TEST(CommandTokenWarningTest, NothingToSayAboutPlainItemsAndWholeMacros) {
  for (const char* token : {"python",
                            "",
                            "$HOME",
                            "$",
                            "{}",
                            "${env}",
                            "${interpreter}",
                            "${program}",
                            "${args}",
                            "${args_no_equals}",
                            "${args_no_hyphens}",
                            "${args_no_boolean_flags}",
                            "${args_json}",
                            "${args_json_file}",
                            "${args_append_hydra}",
                            "${args_override_hydra}",
                            "--port=${envvar:PORT}",
                            "${envvar:_X1}",
                            "${envvar:NAME}",
                            "${env"}) {
    EXPECT_EQ(CommandTokenWarning(token), "") << token;
  }
}

TEST(CommandTokenWarningTest, AnUnknownWholeItemMacroExpandsToNothing) {
  for (const char* token : {"${project}", "${entity}", "${arguments}", "${}"}) {
    const std::string warning = CommandTokenWarning(token);
    EXPECT_THAT(warning, HasSubstr("expands to nothing")) << token;
    EXPECT_THAT(warning, HasSubstr("${args_no_boolean_flags}")) << token;
  }
}

TEST(CommandTokenWarningTest, AMacroInsideALongerItemIsPassedAsWritten) {
  for (const char* token :
       {"--params=${args_json}", "--config=${args_json_file}", "${program}.bak", "--${args}"}) {
    EXPECT_THAT(CommandTokenWarning(token), HasSubstr("passed as written")) << token;
  }
}

TEST(CommandTokenWarningTest, MacroNamesListsAllTwelve) {
  EXPECT_THAT(CommandMacroNames(),
              UnorderedElementsAreArray(std::vector<absl::string_view>{
                  "env", "interpreter", "program", "args", "args_no_equals", "args_no_hyphens",
                  "args_no_boolean_flags", "args_json", "args_json_file", "args_append_hydra",
                  "args_override_hydra", "envvar:NAME"}));
}

}  // namespace
}  // namespace sweepd
