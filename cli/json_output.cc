#include "cli/json_output.h"

#include <cctype>
#include <cmath>
#include <string>

#include "common/spec_format.h"
#include "google/protobuf/descriptor.h"
#include "google/protobuf/timestamp.pb.h"
#include "google/protobuf/util/time_util.h"
#include "sweepd/v1/resources.pb.h"

namespace sweepd::cli {
namespace {

using Json = nlohmann::ordered_json;
using google::protobuf::EnumValueDescriptor;
using google::protobuf::FieldDescriptor;
using google::protobuf::Message;
using google::protobuf::Reflection;

// TrialState -> "TRIAL_STATE_".
std::string EnumPrefix(const std::string& type_name) {
  std::string prefix;
  for (size_t i = 0; i < type_name.size(); ++i) {
    const char c = type_name[i];
    if (i > 0 && std::isupper(static_cast<unsigned char>(c))) prefix += '_';
    prefix += static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  }
  return prefix + "_";
}

Json EnumWord(const EnumValueDescriptor* value) {
  if (value == nullptr || value->number() == 0) return nullptr;  // *_UNSPECIFIED
  std::string name = value->name();
  const std::string prefix = EnumPrefix(value->type()->name());
  if (name.rfind(prefix, 0) == 0) name = name.substr(prefix.size());
  for (auto& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return name;
}

Json Number(double v) {
  if (!std::isfinite(v)) return nullptr;
  return v;
}

Json MessageJson(const Message& message);

Json ScalarJson(const Message& message, const FieldDescriptor* field, int index) {
  const Reflection* r = message.GetReflection();
  const bool repeated = index >= 0;
  switch (field->cpp_type()) {
    case FieldDescriptor::CPPTYPE_INT32:
      return repeated ? r->GetRepeatedInt32(message, field, index) : r->GetInt32(message, field);
    case FieldDescriptor::CPPTYPE_INT64:
      return repeated ? r->GetRepeatedInt64(message, field, index) : r->GetInt64(message, field);
    case FieldDescriptor::CPPTYPE_UINT32:
      return repeated ? r->GetRepeatedUInt32(message, field, index) : r->GetUInt32(message, field);
    case FieldDescriptor::CPPTYPE_UINT64:
      return repeated ? r->GetRepeatedUInt64(message, field, index) : r->GetUInt64(message, field);
    case FieldDescriptor::CPPTYPE_DOUBLE:
      return Number(repeated ? r->GetRepeatedDouble(message, field, index)
                             : r->GetDouble(message, field));
    case FieldDescriptor::CPPTYPE_FLOAT:
      return Number(repeated ? r->GetRepeatedFloat(message, field, index)
                             : r->GetFloat(message, field));
    case FieldDescriptor::CPPTYPE_BOOL:
      return repeated ? r->GetRepeatedBool(message, field, index) : r->GetBool(message, field);
    case FieldDescriptor::CPPTYPE_STRING:
      return repeated ? r->GetRepeatedString(message, field, index) : r->GetString(message, field);
    case FieldDescriptor::CPPTYPE_ENUM:
      return EnumWord(repeated ? r->GetRepeatedEnum(message, field, index)
                               : r->GetEnum(message, field));
    case FieldDescriptor::CPPTYPE_MESSAGE:
      return MessageJson(repeated ? r->GetRepeatedMessage(message, field, index)
                                  : r->GetMessage(message, field));
  }
  return nullptr;
}

// A map entry's key as an object key.
std::string MapKey(const Message& entry) {
  const Json key = ScalarJson(entry, entry.GetDescriptor()->map_key(), -1);
  return key.is_string() ? key.get<std::string>() : key.dump();
}

Json MessageJson(const Message& message) {
  if (const auto* ts = dynamic_cast<const google::protobuf::Timestamp*>(&message)) {
    return google::protobuf::util::TimeUtil::ToString(*ts);
  }
  if (const auto* spec = dynamic_cast<const v1::SweepSpec*>(&message)) return SpecToJson(*spec);
  Json out = Json::object();
  const auto* descriptor = message.GetDescriptor();
  const Reflection* r = message.GetReflection();
  for (int i = 0; i < descriptor->field_count(); ++i) {
    const FieldDescriptor* field = descriptor->field(i);
    if (field->is_map()) {
      Json map = Json::object();
      for (int k = 0; k < r->FieldSize(message, field); ++k) {
        const Message& entry = r->GetRepeatedMessage(message, field, k);
        map[MapKey(entry)] = ScalarJson(entry, field->message_type()->map_value(), -1);
      }
      out[field->name()] = std::move(map);
    } else if (field->is_repeated()) {
      Json list = Json::array();
      for (int k = 0; k < r->FieldSize(message, field); ++k) {
        list.push_back(ScalarJson(message, field, k));
      }
      out[field->name()] = std::move(list);
    } else if (field->has_presence() && !r->HasField(message, field)) {
      continue;  // an unset message or `optional` value: absent, not a made-up zero
    } else {
      out[field->name()] = ScalarJson(message, field, -1);
    }
  }
  return out;
}

}  // namespace

Json ProtoToJson(const Message& message) { return MessageJson(message); }

}  // namespace sweepd::cli
