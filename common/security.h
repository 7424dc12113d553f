#pragma once

// Transport security shared by sweepd, sweep-agent and sweepctl: TLS credentials from PEM files,
// bearer tokens (SWEEPD_TOKEN) checked in constant time by an AuthMetadataProcessor, and the
// loopback rule (without TLS, sweepd serves loopback only).
//
// Who may do what, with TLS on:
//   - SweepService (sweepctl, the API): a valid token, when sweepd has one.
//   - AgentService: a client certificate signed by --tls-ca whose common name is the agent id
//     it registers as (mutual TLS); without --tls-ca, the token.
// The engine then only accepts an agent's messages about trials assigned to that agent.
//
// Thread safety: the functions are stateless; TokenAuthProcessor is immutable after construction
// and gRPC calls it from any thread.

#include <grpcpp/grpcpp.h>
#include <grpcpp/security/auth_metadata_processor.h>

#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace sweepd {

// PEM file paths. All empty: plaintext.
struct TlsFiles {
  std::string cert;  // this side's certificate chain
  std::string key;   // its private key
  std::string ca;    // the CA that signs the other side's certificates
  bool enabled() const { return !cert.empty() || !key.empty() || !ca.empty(); }
};

// "127.0.0.1:7777", "localhost:1", "[::1]:7777": whether the address is on loopback.
bool IsLoopbackAddress(absl::string_view address);

// Equal strings, compared in time that depends only on their lengths.
bool ConstantTimeEquals(absl::string_view a, absl::string_view b);

// The auth-context property the processor sets on a call that carried the right token.
inline constexpr char kTokenProperty[] = "sweepd_token";

// Checks `authorization: Bearer <token>` on every call over TLS: a wrong token is refused
// (UNAUTHENTICATED) before any handler runs; a right one marks the call (kTokenProperty). The
// token is never logged.
class TokenAuthProcessor final : public grpc::AuthMetadataProcessor {
 public:
  explicit TokenAuthProcessor(std::string token) : token_(std::move(token)) {}
  bool IsBlocking() const override { return false; }
  grpc::Status Process(const InputMetadata& auth_metadata, grpc::AuthContext* context,
                       OutputMetadata* consumed_auth_metadata,
                       OutputMetadata* response_metadata) override;

 private:
  const std::string token_;
};

// Server credentials: TLS from `files` (cert and key required; ca: client certificates are
// requested and verified when presented), or plaintext when `files` is empty.
absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> MakeServerCredentials(
    const TlsFiles& files, const std::string& token);

// Channel credentials: TLS trusting `files.ca` (and presenting cert/key when given), or plaintext.
absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> MakeChannelCredentials(
    const TlsFiles& files);

// Whether a call may use SweepService / act as agent `agent_id` on AgentService.
absl::Status AuthorizeApiCall(const grpc::ServerContext& context, bool tls, bool token_required);
absl::Status AuthorizeAgent(const grpc::ServerContext& context, bool tls, bool require_cert,
                            const std::string& agent_id);

// The token from $SWEEPD_TOKEN or a file (first line); empty when neither is set.
absl::StatusOr<std::string> LoadToken(const std::string& token_file);

}  // namespace sweepd
