#include "common/security.h"

#include <grpc/grpc_security_constants.h>

#include <cstdlib>
#include <fstream>
#include <sstream>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace sweepd {
namespace {

absl::StatusOr<std::string> ReadPem(const std::string& path, absl::string_view flag) {
  std::ifstream in(path);
  if (!in) return absl::NotFoundError(absl::StrCat(flag, " ", path, ": cannot read"));
  std::stringstream s;
  s << in.rdbuf();
  std::string text = s.str();
  if (!absl::StrContains(text, "-----BEGIN ")) {
    return absl::InvalidArgumentError(absl::StrCat(flag, " ", path, ": not a PEM file"));
  }
  return text;
}

}  // namespace

bool IsLoopbackAddress(absl::string_view address) {
  absl::string_view host = address;
  if (absl::StartsWith(host, "[")) {
    host = host.substr(
        1, host.find(']') == absl::string_view::npos ? host.size() - 1 : host.find(']') - 1);
  } else if (const size_t colon = host.rfind(':'); colon != absl::string_view::npos) {
    host = host.substr(0, colon);
  }
  return host == "localhost" || host == "::1" || absl::StartsWith(host, "127.");
}

bool ConstantTimeEquals(absl::string_view a, absl::string_view b) {
  unsigned char diff = a.size() == b.size() ? 0 : 1;
  const size_t n = std::max(a.size(), b.size());
  for (size_t i = 0; i < n; ++i) {
    const unsigned char x = i < a.size() ? static_cast<unsigned char>(a[i]) : 0;
    const unsigned char y = i < b.size() ? static_cast<unsigned char>(b[i]) : 0;
    diff |= static_cast<unsigned char>(x ^ y);
  }
  return diff == 0;
}

grpc::Status TokenAuthProcessor::Process(const InputMetadata& auth_metadata,
                                         grpc::AuthContext* context,
                                         OutputMetadata* consumed_auth_metadata, OutputMetadata*) {
  auto it = auth_metadata.find("authorization");
  if (it == auth_metadata.end()) return grpc::Status::OK;  // the handler decides
  const std::string value(it->second.data(), it->second.size());
  constexpr absl::string_view kBearer = "Bearer ";
  if (!absl::StartsWith(value, kBearer) ||
      !ConstantTimeEquals(absl::string_view(value).substr(kBearer.size()), token_)) {
    return grpc::Status(grpc::StatusCode::UNAUTHENTICATED,
                        "the token is wrong (check SWEEPD_TOKEN)");
  }
  consumed_auth_metadata->insert(std::make_pair(std::string(it->first.data(), it->first.size()),
                                                std::string(it->second.data(), it->second.size())));
  context->AddProperty(kTokenProperty, "ok");
  return grpc::Status::OK;
}

absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> MakeServerCredentials(
    const TlsFiles& files, const std::string& token) {
  if (!files.enabled()) return grpc::InsecureServerCredentials();
  if (files.cert.empty() || files.key.empty()) {
    return absl::InvalidArgumentError("--tls-cert and --tls-key: both are needed for TLS");
  }
  grpc::SslServerCredentialsOptions options(files.ca.empty()
                                                ? GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE
                                                : GRPC_SSL_REQUEST_CLIENT_CERTIFICATE_AND_VERIFY);
  grpc::SslServerCredentialsOptions::PemKeyCertPair pair;
  auto cert = ReadPem(files.cert, "--tls-cert");
  if (!cert.ok()) return cert.status();
  auto key = ReadPem(files.key, "--tls-key");
  if (!key.ok()) return key.status();
  pair.cert_chain = *cert;
  pair.private_key = *key;
  options.pem_key_cert_pairs.push_back(std::move(pair));
  if (!files.ca.empty()) {
    auto ca = ReadPem(files.ca, "--tls-ca");
    if (!ca.ok()) return ca.status();
    options.pem_root_certs = *ca;
  }
  auto credentials = grpc::SslServerCredentials(options);
  if (!token.empty()) {
    credentials->SetAuthMetadataProcessor(std::make_shared<TokenAuthProcessor>(token));
  }
  return credentials;
}

absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> MakeChannelCredentials(
    const TlsFiles& files) {
  if (!files.enabled()) return grpc::InsecureChannelCredentials();
  grpc::SslCredentialsOptions options;
  if (!files.ca.empty()) {
    auto ca = ReadPem(files.ca, "--tls-ca");
    if (!ca.ok()) return ca.status();
    options.pem_root_certs = *ca;
  }
  if (!files.cert.empty() || !files.key.empty()) {
    if (files.cert.empty() || files.key.empty()) {
      return absl::InvalidArgumentError("--tls-cert and --tls-key: give both, or neither");
    }
    auto cert = ReadPem(files.cert, "--tls-cert");
    if (!cert.ok()) return cert.status();
    auto key = ReadPem(files.key, "--tls-key");
    if (!key.ok()) return key.status();
    options.pem_cert_chain = *cert;
    options.pem_private_key = *key;
  }
  return grpc::SslCredentials(options);
}

absl::Status AuthorizeApiCall(const grpc::ServerContext& context, bool tls, bool token_required) {
  if (!tls || !token_required) return absl::OkStatus();  // plaintext is loopback only
  auto auth = context.auth_context();
  if (auth && !auth->FindPropertyValues(kTokenProperty).empty()) return absl::OkStatus();
  return absl::UnauthenticatedError(
      "this sweepd needs a token: set SWEEPD_TOKEN to the token it was started with");
}

absl::Status AuthorizeAgent(const grpc::ServerContext& context, bool tls, bool require_cert,
                            const std::string& agent_id) {
  if (!tls) return absl::OkStatus();
  auto auth = context.auth_context();
  if (require_cert) {
    const auto names = auth ? auth->FindPropertyValues(GRPC_X509_CN_PROPERTY_NAME)
                            : std::vector<grpc::string_ref>{};
    if (names.empty()) {
      return absl::UnauthenticatedError(
          "agents must present a client certificate signed by sweepd's --tls-ca");
    }
    const std::string cn(names[0].data(), names[0].size());
    if (cn != agent_id) {
      return absl::PermissionDeniedError(absl::StrCat("this certificate is for agent '", cn,
                                                      "'; it cannot register as '", agent_id, "'"));
    }
    return absl::OkStatus();
  }
  if (auth && !auth->FindPropertyValues(kTokenProperty).empty()) return absl::OkStatus();
  return absl::UnauthenticatedError("agents need SWEEPD_TOKEN (or a client certificate)");
}

absl::StatusOr<std::string> LoadToken(const std::string& token_file) {
  if (!token_file.empty()) {
    std::ifstream in(token_file);
    if (!in) return absl::NotFoundError(absl::StrCat("--token-file ", token_file, ": cannot read"));
    std::string token;
    std::getline(in, token);
    token = std::string(absl::StripAsciiWhitespace(token));
    if (token.size() < 16) {
      return absl::InvalidArgumentError(absl::StrCat(
          "--token-file ", token_file, ": the token must have at least 16 characters"));
    }
    return token;
  }
  const char* env = std::getenv("SWEEPD_TOKEN");
  return std::string(env != nullptr ? env : "");
}

}  // namespace sweepd
