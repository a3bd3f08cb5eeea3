// Where S3 credentials come from (reportstore.credential_source):
//
//   static        long-lived keys (settings, else AWS_* environment)
//   web_identity  the token file (Kubernetes/EKS: AWS_WEB_IDENTITY_TOKEN_FILE)
//                 exchanged with STS AssumeRoleWithWebIdentity for the role
//                 (reportstore.role_arn, else AWS_ROLE_ARN); the file is read
//                 again at every refresh (Kubernetes rotates it)
//   instance      the EC2 instance's role, from IMDSv2
//   auto          static keys when there are some, else web identity when a
//                 token file is configured, else the instance (the AWS SDKs'
//                 order)
//
// With reportstore.role_arn, static keys and instance credentials are
// exchanged with STS AssumeRole for that role (MinIO and Ceph RGW offer
// AssumeRole to their static users). PostgreSQL-free: the caller gathers the
// settings and the environment.
#pragma once

#include <string>

#include "core/aws/credentials.hpp"
#include "core/aws/imds.hpp"
#include "core/aws/sts.hpp"

namespace reportstore::aws {

enum class CredentialSource { kStatic, kWebIdentity, kInstance, kAuto };
const char *CredentialSourceName(CredentialSource source); // "static", "web_identity", "instance", "auto"

struct SourceSettings {
	CredentialSource source = CredentialSource::kStatic;
	Credentials static_credentials;       // from the settings, else the environment; may be empty
	bool static_from_environment = false; // where static_credentials came from (for auto's label)
	std::string role_arn;                 // reportstore.role_arn
	std::string environment_role_arn;     // AWS_ROLE_ARN
	std::string role_session_name = "reportstore";
	std::string web_identity_token_file; // reportstore.web_identity_token_file, else AWS_WEB_IDENTITY_TOKEN_FILE
	StsConfig sts;
	ImdsConfig imds;
};

// The source `auto` stands for with these settings (others: themselves).
CredentialSource EffectiveSource(const SourceSettings &settings);

// Whether credentials must be obtained (and refreshed); false for static
// keys used as they are.
bool IsTemporary(const SourceSettings &settings);

// How credentials are obtained, for reportstore.status: "static",
// "static + assume_role", "web_identity", "instance", "instance +
// assume_role", "auto: environment", "auto: web_identity", ...
std::string SourceLabel(const SourceSettings &settings);

// Throws reportstore::Error (kConfig, 28000 or 22023) when the settings
// cannot give credentials: no static keys, a web identity without a role or
// a token file, an invalid role ARN or session name.
void CheckSourceSettings(const SourceSettings &settings);

// Hex digest of everything that decides which credentials the settings give:
// cached credentials belong to one fingerprint.
std::string Fingerprint(const SourceSettings &settings);

// New credentials: reads the token file, calls STS and IMDS as the source
// asks. Throws reportstore::Error (kSystemic, the failed step in the
// message; kInterrupted; kConfig).
FetchedCredentials FetchCredentials(http::Engine &engine, const SourceSettings &settings,
                                    const http::InterruptProbe &probe, Clock clock = SystemClock());

// Largest web identity token file read (EKS tokens are about 1 KiB).
inline constexpr std::size_t kMaxWebIdentityTokenBytes = 64u << 10;

// The token in the file, without surrounding blanks. Throws
// reportstore::Error (kSystemic, 28000) naming the file, never its content.
std::string ReadWebIdentityToken(const std::string &path);

} // namespace reportstore::aws
