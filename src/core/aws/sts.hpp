// AWS Security Token Service (STS) requests for temporary credentials:
// AssumeRole (SigV4-signed for service "sts" with the credentials it starts
// from) and AssumeRoleWithWebIdentity (unsigned: the web identity token is
// the proof). The same Query API is offered by AWS STS, MinIO and Ceph RGW
// (the latter two at the S3 endpoint itself).
//
// Bodies are bounded, failures become reportstore::Error of kind kSystemic
// (28000 when STS refused, 08001 when it could not be reached or did not
// answer, 08P01 for an answer that is not STS's), and no token or secret
// ever reaches a message: text from the server is redacted before it is
// repeated.
#pragma once

#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "core/aws/credentials.hpp"
#include "core/http/engine.hpp"
#include "core/uri.hpp"

namespace reportstore::aws {

struct StsConfig {
	uri::Endpoint endpoint; // where STS answers
	std::string region;     // region of the signatures (see StsSigningRegion)
	long connect_timeout_ms = 5000;
	long timeout_ms = 30000;
};

// Largest session token accepted (AWS documents no limit; theirs are 1-2 KiB).
inline constexpr std::size_t kMaxSessionTokenBytes = 8192;

// AWS's regional STS endpoint: https://sts.{region}.amazonaws.com
// (.amazonaws.com.cn for the China regions).
std::string RegionalStsEndpoint(const std::string &region);

// The region STS signatures name at this endpoint: us-east-1 for AWS's global
// endpoint sts.amazonaws.com, else `region`.
std::string StsSigningRegion(const uri::Endpoint &endpoint, const std::string &region);

// Checks a role ARN and a session name before they are sent; throws
// reportstore::Error (kConfig, 22023).
void CheckRoleArn(const std::string &role_arn);
void CheckRoleSessionName(const std::string &name);

// STS AssumeRole of role_arn, signed with `base`. Throws reportstore::Error.
TimedCredentials AssumeRole(http::Engine &engine, const StsConfig &config, const Credentials &base,
                            const std::string &role_arn, const std::string &session_name,
                            const http::InterruptProbe &probe, Clock clock = SystemClock());

// STS AssumeRoleWithWebIdentity of role_arn with the token (a JWT). Throws
// reportstore::Error.
TimedCredentials AssumeRoleWithWebIdentity(http::Engine &engine, const StsConfig &config, const std::string &token,
                                           const std::string &role_arn, const std::string &session_name,
                                           const http::InterruptProbe &probe);

// --- Exposed for the unit tests and the fuzzer ----------------------------------

// application/x-www-form-urlencoded body of the parameters, in order.
std::string FormBody(const std::vector<std::pair<std::string, std::string>> &params);

// The Credentials of an `action` response (<{action}Response><{action}Result>
// <Credentials>): AccessKeyId, SecretAccessKey, SessionToken, Expiration.
// Throws reportstore::Error (kSystemic, 08P01) when it is malformed.
TimedCredentials ParseStsCredentials(std::string_view xml, const std::string &action);

struct StsError {
	std::string code;
	std::string message;
	std::string request_id;
};
// An STS error document: <ErrorResponse><Error><Code/><Message/></Error>
// <RequestId/></ErrorResponse>, or an S3-style <Error> (Ceph RGW). False
// when the body is neither.
bool ParseStsError(std::string_view xml, StsError *out);

} // namespace reportstore::aws
