// STS AssumeRole and AssumeRoleWithWebIdentity. See sts.hpp.
#include "core/aws/sts.hpp"

#include <algorithm>

#include "core/crypto.hpp"
#include "core/error.hpp"
#include "core/strings.hpp"
#include "core/xml_doc.hpp"

namespace reportstore::aws {

namespace {

constexpr const char *kStsVersion = "2011-06-15";
constexpr std::size_t kMaxStsResponseBytes = 64u << 10; // a few KiB in practice
constexpr std::size_t kMaxServerText = 300;
constexpr std::size_t kMaxKeyBytes = 256;

// What the request is about, for messages.
struct Call {
	const char *action;
	std::string origin; // STS endpoint, for messages
	// Secrets that must never be repeated, whatever the server echoes.
	std::string_view secret1, secret2, secret3;

	std::string Clean(std::string_view server_text) const {
		return strings::Clean(strings::Redact(std::string(server_text), {secret1, secret2, secret3}),
		                      kMaxServerText);
	}
	std::string Message() const {
		return std::string("could not obtain S3 credentials from STS (") + action + ")";
	}
};

[[noreturn]] void Malformed(const Call &call, const std::string &why) {
	throw Error(ErrorKind::kSystemic, sqlstate::kProtocolViolation, call.Message(),
	            "The answer of STS at " + call.origin + " to " + call.action + " is not an STS response: " + why + ".",
	            "Check reportstore.sts_endpoint: it must name an STS service (empty: AWS's regional STS; for MinIO "
	            "and Ceph RGW, their S3 endpoint).");
}

const char *RefusedHint(const Call &call, const std::string &code) {
	if (std::string(call.action) == "AssumeRoleWithWebIdentity") {
		if (code == "ExpiredTokenException" || code == "ExpiredToken")
			return "The web identity token has expired. Kubernetes rotates the projected token file; check that "
			       "reportstore.web_identity_token_file (or AWS_WEB_IDENTITY_TOKEN_FILE) names the mounted file "
			       "and that it is still being renewed.";
		return "Check reportstore.role_arn (or AWS_ROLE_ARN), that the role's trust policy allows "
		       "sts:AssumeRoleWithWebIdentity for this token's issuer, subject and audience, and that the token "
		       "file is current.";
	}
	return "Check reportstore.role_arn, and that the role's trust policy lets the credentials it is assumed with "
	       "(the static keys or the instance's role) call sts:AssumeRole.";
}

// Every failed exchange with STS: kSystemic (no credentials, nothing works).
Error FailedCall(const Call &call, const http::Response &resp) {
	using http::TransportStatus;
	const std::string message = call.Message();
	const char *reach_hint = "Check reportstore.sts_endpoint (empty: AWS's regional STS for reportstore.region) and "
	                         "that it is reachable from the database server.";
	if (resp.transport != TransportStatus::kOk) {
		const std::string why = call.Clean(resp.transport_error);
		switch (resp.transport) {
		case TransportStatus::kInterrupted:
			return Error(ErrorKind::kInterrupted, sqlstate::kQueryCanceled, message, "The request was interrupted.");
		case TransportStatus::kTimeout:
			return Error(ErrorKind::kSystemic, sqlstate::kUnableToConnect, message,
			             "STS at " + call.origin + " did not answer in time: " + why, reach_hint);
		case TransportStatus::kTooLarge:
			return Error(ErrorKind::kSystemic, sqlstate::kProtocolViolation, message,
			             "The answer of STS at " + call.origin + " is larger than " +
			                 std::to_string(kMaxStsResponseBytes) + " bytes.",
			             reach_hint);
		case TransportStatus::kTlsError:
			return Error(ErrorKind::kSystemic, sqlstate::kUnableToConnect, message,
			             "TLS error with STS at " + call.origin + ": " + why,
			             "Check the STS endpoint's certificate, reportstore.ca_file and reportstore.verify_tls.");
		default:
			return Error(ErrorKind::kSystemic, sqlstate::kUnableToConnect, message,
			             "Could not reach STS at " + call.origin + ": " + why, reach_hint);
		}
	}
	StsError error;
	const std::string status = std::to_string(resp.status);
	std::string detail = "STS at " + call.origin + " answered HTTP " + status;
	if (ParseStsError(resp.body, &error) && !error.code.empty()) {
		detail += ": " + call.Clean(error.code);
		if (!error.message.empty())
			detail += ": " + call.Clean(error.message);
		if (!error.request_id.empty())
			detail += " (request id " + call.Clean(error.request_id) + ")";
	}
	detail += ".";
	const bool unavailable = resp.status >= 500 || resp.status == 429 || error.code == "Throttling" ||
	                         error.code == "IDPCommunicationError";
	if (unavailable)
		return Error(ErrorKind::kSystemic, sqlstate::kUnableToConnect, message, detail,
		             "STS is unavailable or throttles the requests; reportstore tries again.");
	return Error(ErrorKind::kSystemic, sqlstate::kInvalidAuthorization, message, detail,
	             RefusedHint(call, error.code));
}

// The first element child of n with this local name.
const xmlNode *Child(const xmlNode *n, const char *name) {
	for (const xmlNode *c = n ? n->children : nullptr; c; c = c->next)
		if (xml::IsLocal(c, name))
			return c;
	return nullptr;
}

std::string Required(const Call &call, const xmlNode *credentials, const char *name, std::size_t max_bytes) {
	const xmlNode *n = Child(credentials, name);
	if (n == nullptr)
		Malformed(call, std::string("the Credentials have no ") + name);
	std::string value(strings::Trim(xml::Text(n)));
	if (value.empty())
		Malformed(call, std::string("the ") + name + " is empty");
	if (value.size() > max_bytes || !strings::IsPrintable(value))
		Malformed(call, std::string("the ") + name + " is longer than " + std::to_string(max_bytes) +
		                    " bytes or has non-printable characters");
	return value;
}

TimedCredentials ParseCredentials(std::string_view body, const Call &call) {
	std::string why;
	xml::DocPtr doc = xml::Parse(strings::TrimLeft(body), kMaxStsResponseBytes, &why);
	if (!doc)
		Malformed(call, why);
	const xmlNode *root = xmlDocGetRootElement(doc.get());
	const std::string action = call.action;
	if (!xml::IsLocal(root, (action + "Response").c_str()))
		Malformed(call, "unexpected root element \"" + call.Clean(xml::RootName(root)) + "\"");
	const xmlNode *credentials = Child(Child(root, (action + "Result").c_str()), "Credentials");
	if (credentials == nullptr)
		Malformed(call, "no " + action + "Result/Credentials element");
	TimedCredentials out;
	out.credentials.access_key_id = Required(call, credentials, "AccessKeyId", kMaxKeyBytes);
	out.credentials.secret_access_key = Required(call, credentials, "SecretAccessKey", kMaxKeyBytes);
	out.credentials.session_token = Required(call, credentials, "SessionToken", kMaxSessionTokenBytes);
	const std::string expiration = Required(call, credentials, "Expiration", 64);
	if (!ParseIso8601Utc(expiration, &out.expiration))
		Malformed(call, "invalid Expiration \"" + call.Clean(expiration) + "\"");
	return out;
}

http::Request StsRequest(const StsConfig &config, const std::string &body) {
	http::Request r;
	r.method = "POST";
	r.url = config.endpoint.Origin() + "/";
	r.headers.emplace_back("Host", config.endpoint.HostHeader());
	r.headers.emplace_back("Content-Type", "application/x-www-form-urlencoded; charset=utf-8");
	r.headers.emplace_back("Accept", "application/xml");
	r.body = body;
	r.timeout_ms = config.timeout_ms;
	r.connect_timeout_ms = config.connect_timeout_ms;
	r.max_response_bytes = kMaxStsResponseBytes;
	return r;
}

TimedCredentials Exchange(http::Engine &engine, const Call &call, const http::Request &request,
                          const http::InterruptProbe &probe) {
	const http::Response resp = engine.PerformOne(request, probe);
	if (resp.transport != http::TransportStatus::kOk || resp.status != 200)
		throw FailedCall(call, resp);
	return ParseCredentials(resp.body, call);
}

} // namespace

std::string RegionalStsEndpoint(const std::string &region) {
	const bool china = strings::StartsWith(region, "cn-");
	return "https://sts." + region + (china ? ".amazonaws.com.cn" : ".amazonaws.com");
}

std::string StsSigningRegion(const uri::Endpoint &endpoint, const std::string &region) {
	return strings::Lower(endpoint.host) == "sts.amazonaws.com" ? "us-east-1" : region;
}

void CheckRoleArn(const std::string &role_arn) {
	if (role_arn.size() < 20 || role_arn.size() > 2048 || !strings::IsPrintable(role_arn) ||
	    !strings::StartsWith(role_arn, "arn:"))
		throw Error(ErrorKind::kConfig, sqlstate::kInvalidParameterValue, "invalid role ARN",
		            "A role ARN has 20 to 2048 printable characters and starts with \"arn:\".",
		            "Use the role's ARN, e.g. arn:aws:iam::123456789012:role/reportstore (Ceph RGW and MinIO: "
		            "arn:aws:iam:::role/NAME).");
}

void CheckRoleSessionName(const std::string &name) {
	const bool ok = name.size() >= 2 && name.size() <= 64 && std::all_of(name.begin(), name.end(), [](char c) {
		                return strings::IsAlnum(c) || std::string_view("_+=,.@-").find(c) != std::string_view::npos;
	                });
	if (!ok)
		throw Error(ErrorKind::kConfig, sqlstate::kInvalidParameterValue, "invalid role session name",
		            "A role session name has 2 to 64 letters, digits and _+=,.@- characters.",
		            "Set reportstore.role_session_name, e.g. to 'reportstore'.");
}

std::string FormBody(const std::vector<std::pair<std::string, std::string>> &params) {
	std::string body;
	for (const auto &[name, value] : params) {
		if (!body.empty())
			body.push_back('&');
		body += uri::UriEncode(name, true) + "=" + uri::UriEncode(value, true);
	}
	return body;
}

TimedCredentials AssumeRole(http::Engine &engine, const StsConfig &config, const Credentials &base,
                            const std::string &role_arn, const std::string &session_name,
                            const http::InterruptProbe &probe, Clock clock) {
	CheckRoleArn(role_arn);
	CheckRoleSessionName(session_name);
	const Call call{"AssumeRole", config.endpoint.Origin(), base.secret_access_key, base.session_token, {}};
	const std::string body = FormBody(
	    {{"Action", "AssumeRole"}, {"RoleArn", role_arn}, {"RoleSessionName", session_name}, {"Version", kStsVersion}});
	http::Request request = StsRequest(config, body);

	RequestToSign rs;
	rs.method = "POST";
	rs.host = config.endpoint.HostHeader();
	rs.path = "/";
	for (const auto &h : request.headers)
		if (strings::Lower(h.first) == "content-type")
			rs.headers.push_back(h);
	rs.payload_hash = crypto::HexEncode(crypto::Sha256(body));
	const Signer signer(base, StsSigningRegion(config.endpoint, config.region), "sts", std::move(clock));
	for (auto &h : signer.Sign(rs))
		request.headers.push_back(std::move(h));
	return Exchange(engine, call, request, probe);
}

TimedCredentials AssumeRoleWithWebIdentity(http::Engine &engine, const StsConfig &config, const std::string &token,
                                           const std::string &role_arn, const std::string &session_name,
                                           const http::InterruptProbe &probe) {
	CheckRoleArn(role_arn);
	CheckRoleSessionName(session_name);
	const Call call{"AssumeRoleWithWebIdentity", config.endpoint.Origin(), token, {}, {}};
	const std::string body = FormBody({{"Action", "AssumeRoleWithWebIdentity"},
	                                   {"RoleArn", role_arn},
	                                   {"RoleSessionName", session_name},
	                                   {"WebIdentityToken", token},
	                                   {"Version", kStsVersion}});
	return Exchange(engine, call, StsRequest(config, body), probe);
}

TimedCredentials ParseStsCredentials(std::string_view xml, const std::string &action) {
	if (action != "AssumeRole" && action != "AssumeRoleWithWebIdentity")
		throw Error(ErrorKind::kInternal, sqlstate::kInternalError, "unknown STS action");
	const Call call{action == "AssumeRole" ? "AssumeRole" : "AssumeRoleWithWebIdentity", "(test)", {}, {}, {}};
	return ParseCredentials(xml, call);
}

bool ParseStsError(std::string_view body, StsError *out) {
	try {
		xml::DocPtr doc = xml::Parse(strings::TrimLeft(body), kMaxStsResponseBytes, nullptr);
		if (!doc)
			return false;
		const xmlNode *root = xmlDocGetRootElement(doc.get());
		const xmlNode *error = nullptr;
		if (xml::IsLocal(root, "ErrorResponse"))
			error = Child(root, "Error");
		else if (xml::IsLocal(root, "Error"))
			error = root;
		if (error == nullptr)
			return false;
		StsError e;
		if (const xmlNode *n = Child(error, "Code"))
			e.code = xml::Text(n);
		if (const xmlNode *n = Child(error, "Message"))
			e.message = xml::Text(n);
		if (const xmlNode *n = Child(root, "RequestId"))
			e.request_id = xml::Text(n);
		else if (const xmlNode *m = Child(error, "RequestId"))
			e.request_id = xml::Text(m);
		if (out)
			*out = std::move(e);
		return true;
	} catch (...) {
		return false; // std::bad_alloc only
	}
}

} // namespace reportstore::aws
