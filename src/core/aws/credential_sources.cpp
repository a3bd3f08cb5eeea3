// Credential sources. See credential_sources.hpp.
#include "core/aws/credential_sources.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "core/crypto.hpp"
#include "core/error.hpp"
#include "core/strings.hpp"

namespace reportstore::aws {

namespace {

constexpr const char *kTokenFileHint =
    "Check reportstore.web_identity_token_file (empty: AWS_WEB_IDENTITY_TOKEN_FILE in the server's environment): "
    "it must name a file that the operating-system user running PostgreSQL can read. On EKS it is the projected "
    "service account token, mounted when the pod's service account is annotated with eks.amazonaws.com/role-arn.";

// The role web identity credentials are for: the setting, else AWS_ROLE_ARN.
const std::string &WebIdentityRole(const SourceSettings &s) {
	return s.role_arn.empty() ? s.environment_role_arn : s.role_arn;
}

[[noreturn]] void TokenFileError(const std::string &path, const std::string &detail) {
	throw Error(ErrorKind::kSystemic, sqlstate::kInvalidAuthorization,
	            "could not read the web identity token file \"" + strings::Clean(path, 300) + "\"", detail,
	            kTokenFileHint);
}

// Closes a file descriptor on every path out.
class Fd {
  public:
	explicit Fd(int fd) : fd_(fd) {}
	~Fd() {
		if (fd_ >= 0)
			::close(fd_);
	}
	Fd(const Fd &) = delete;
	Fd &operator=(const Fd &) = delete;
	int get() const {
		return fd_;
	}

  private:
	int fd_;
};

std::string Errno(int err) {
	char buf[256];
	// GNU strerror_r returns the message (maybe not in buf).
	return strerror_r(err, buf, sizeof(buf));
}

} // namespace

const char *CredentialSourceName(CredentialSource source) {
	switch (source) {
	case CredentialSource::kStatic:
		return "static";
	case CredentialSource::kWebIdentity:
		return "web_identity";
	case CredentialSource::kInstance:
		return "instance";
	case CredentialSource::kAuto:
		return "auto";
	}
	return "unknown";
}

CredentialSource EffectiveSource(const SourceSettings &s) {
	if (s.source != CredentialSource::kAuto)
		return s.source;
	if (!s.static_credentials.Empty())
		return CredentialSource::kStatic;
	if (!s.web_identity_token_file.empty())
		return CredentialSource::kWebIdentity;
	return CredentialSource::kInstance;
}

bool IsTemporary(const SourceSettings &s) {
	return EffectiveSource(s) != CredentialSource::kStatic || !s.role_arn.empty();
}

std::string SourceLabel(const SourceSettings &s) {
	const CredentialSource effective = EffectiveSource(s);
	std::string label;
	if (s.source == CredentialSource::kAuto)
		label = std::string("auto: ") +
		        (effective == CredentialSource::kStatic
		             ? (s.static_from_environment ? "environment" : "static")
		             : CredentialSourceName(effective));
	else
		label = CredentialSourceName(effective);
	if (effective != CredentialSource::kWebIdentity && !s.role_arn.empty())
		label += " + assume_role";
	return label;
}

void CheckSourceSettings(const SourceSettings &s) {
	const CredentialSource effective = EffectiveSource(s);
	if (effective == CredentialSource::kStatic && s.static_credentials.Empty())
		throw Error(ErrorKind::kConfig, sqlstate::kInvalidAuthorization, "no S3 credentials are configured", {},
		            s.source == CredentialSource::kAuto
		                ? "Set reportstore.access_key_id and reportstore.secret_access_key, AWS_ACCESS_KEY_ID and "
		                  "AWS_SECRET_ACCESS_KEY, or a web identity token file."
		                : "Set reportstore.access_key_id and reportstore.secret_access_key, or AWS_ACCESS_KEY_ID and "
		                  "AWS_SECRET_ACCESS_KEY in the server's environment, or choose another "
		                  "reportstore.credential_source.");
	if (effective == CredentialSource::kWebIdentity) {
		if (s.web_identity_token_file.empty())
			throw Error(ErrorKind::kConfig, sqlstate::kInvalidAuthorization,
			            "no web identity token file is configured", {},
			            "Set reportstore.web_identity_token_file, or AWS_WEB_IDENTITY_TOKEN_FILE in the server's "
			            "environment.");
		if (WebIdentityRole(s).empty())
			throw Error(ErrorKind::kConfig, sqlstate::kInvalidAuthorization,
			            "web identity credentials need the ARN of the role to assume", {},
			            "Set reportstore.role_arn, or AWS_ROLE_ARN in the server's environment.");
		CheckRoleArn(WebIdentityRole(s));
	} else if (!s.role_arn.empty()) {
		CheckRoleArn(s.role_arn);
	}
	if (IsTemporary(s))
		CheckRoleSessionName(s.role_session_name);
}

std::string Fingerprint(const SourceSettings &s) {
	auto field = [](std::string_view v) { return std::to_string(v.size()) + ":" + std::string(v) + ";"; };
	std::string text = field(CredentialSourceName(s.source));
	text += field(s.static_credentials.access_key_id);
	// Secrets enter only as digests.
	text += field(crypto::HexEncode(crypto::Sha256(s.static_credentials.secret_access_key)));
	text += field(crypto::HexEncode(crypto::Sha256(s.static_credentials.session_token)));
	text += field(s.static_from_environment ? "env" : "settings");
	text += field(s.role_arn) + field(s.environment_role_arn) + field(s.role_session_name);
	text += field(s.web_identity_token_file);
	text += field(s.sts.endpoint.Origin()) + field(s.sts.region);
	text += field(s.imds.endpoint.Origin());
	return crypto::HexEncode(crypto::Sha256(text));
}

std::string ReadWebIdentityToken(const std::string &path) {
	if (path.empty())
		TokenFileError(path, "No file is configured.");
	// O_NONBLOCK: a FIFO in its place must not block the server.
	Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK));
	if (fd.get() < 0)
		TokenFileError(path, Errno(errno) + ".");
	struct stat st;
	if (::fstat(fd.get(), &st) != 0)
		TokenFileError(path, Errno(errno) + ".");
	if (!S_ISREG(st.st_mode))
		TokenFileError(path, "It is not a regular file.");
	std::string token;
	char buf[4096];
	for (;;) {
		const ssize_t n = ::read(fd.get(), buf, sizeof(buf));
		if (n < 0) {
			if (errno == EINTR)
				continue;
			TokenFileError(path, Errno(errno) + ".");
		}
		if (n == 0)
			break;
		token.append(buf, static_cast<std::size_t>(n));
		if (token.size() > kMaxWebIdentityTokenBytes)
			TokenFileError(path, "It is larger than " + std::to_string(kMaxWebIdentityTokenBytes) + " bytes.");
	}
	const std::string_view trimmed = strings::Trim(token);
	if (trimmed.empty())
		TokenFileError(path, "It is empty.");
	if (!strings::IsPrintable(trimmed))
		TokenFileError(path, "It has non-printable characters; a web identity token is a JWT.");
	return std::string(trimmed);
}

FetchedCredentials FetchCredentials(http::Engine &engine, const SourceSettings &s, const http::InterruptProbe &probe,
                                    Clock clock) {
	CheckSourceSettings(s);
	FetchedCredentials out;
	out.source = SourceLabel(s);
	Credentials base;
	switch (EffectiveSource(s)) {
	case CredentialSource::kWebIdentity: {
		const std::string token = ReadWebIdentityToken(s.web_identity_token_file);
		out.credentials =
		    AssumeRoleWithWebIdentity(engine, s.sts, token, WebIdentityRole(s), s.role_session_name, probe);
		return out;
	}
	case CredentialSource::kInstance: {
		TimedCredentials instance = FetchInstanceCredentials(engine, s.imds, probe);
		if (s.role_arn.empty()) {
			out.credentials = std::move(instance);
			return out;
		}
		base = std::move(instance.credentials);
		break;
	}
	case CredentialSource::kStatic:
	case CredentialSource::kAuto: // EffectiveSource never returns it
		base = s.static_credentials;
		if (s.role_arn.empty()) {
			out.credentials.credentials = base;
			return out;
		}
		break;
	}
	out.credentials = AssumeRole(engine, s.sts, base, s.role_arn, s.role_session_name, probe, std::move(clock));
	return out;
}

} // namespace reportstore::aws
