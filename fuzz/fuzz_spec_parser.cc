// The sweep-spec parser on arbitrary bytes: it must answer (a spec or errors naming a key), never
// crash, hang or leak; and a spec it accepts must survive its own normalised form.

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <string>

#include "common/spec_format.h"
#include "common/spec_parser.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string yaml(reinterpret_cast<const char*>(data), size);
  auto parsed = sweepd::ParseSweepSpec(yaml);
  if (!parsed.ok()) return 0;
  // Accepted: its normalised YAML parses again, to the same normal form.
  const auto normal = sweepd::SpecToJson(parsed->spec);
  auto again = sweepd::ParseSweepSpec(sweepd::JsonToYaml(normal));
  if (again.ok() && sweepd::SpecToJson(again->spec) == normal) return 0;
  // Say what differs, so a finding in CI can be read from its log.
  std::fprintf(stderr, "normal form:\n%s\nreparsed: %s\n", normal.dump(2, ' ', true).c_str(),
               again.ok() ? sweepd::SpecToJson(again->spec).dump(2, ' ', true).c_str()
                          : again.status().ToString().c_str());
  __builtin_trap();
  return 0;
}
