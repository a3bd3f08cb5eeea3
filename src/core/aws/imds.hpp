// The credentials of an EC2 instance's IAM role from the instance metadata
// service, IMDSv2 only: PUT /latest/api/token for a session token, GET
// /latest/meta-data/iam/security-credentials/ for the role's name, then GET
// .../security-credentials/{role} for its credentials (JSON). Short timeouts,
// never through a proxy, bounded answers; the IMDS session token never
// reaches a message.
#pragma once

#include <string>
#include <string_view>

#include "core/aws/credentials.hpp"
#include "core/http/engine.hpp"
#include "core/uri.hpp"

namespace reportstore::aws {

inline constexpr const char *kDefaultImdsEndpoint = "http://169.254.169.254";

struct ImdsConfig {
	uri::Endpoint endpoint;         // http://169.254.169.254 on EC2
	long connect_timeout_ms = 1000; // IMDS answers within milliseconds when it is there
	long timeout_ms = 2000;         // per request (three of them)
};

// Throws reportstore::Error (kSystemic: 08001 when IMDS does not answer, 28000
// when it has no role or refuses, 08P01 for an answer that is not IMDS's).
TimedCredentials FetchInstanceCredentials(http::Engine &engine, const ImdsConfig &config,
                                          const http::InterruptProbe &probe);

// The JSON document of a role's credentials: Code "Success", AccessKeyId,
// SecretAccessKey, Token, Expiration. Throws reportstore::Error (kSystemic,
// 08P01 when malformed, 28000 when its Code is not Success). Exposed for tests.
TimedCredentials ParseImdsCredentials(std::string_view json);

} // namespace reportstore::aws
