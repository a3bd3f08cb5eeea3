// Instance role credentials from IMDSv2. See imds.hpp.
#include "core/aws/imds.hpp"

#include <algorithm>
#include <utility>
#include <vector>

#include "core/aws/sts.hpp"
#include "core/error.hpp"
#include "core/strings.hpp"

namespace reportstore::aws {

namespace {

constexpr std::size_t kMaxImdsResponseBytes = 64u << 10;
constexpr std::size_t kMaxServerText = 300;
constexpr const char *kTokenPath = "/latest/api/token";
constexpr const char *kRolesPath = "/latest/meta-data/iam/security-credentials/";
constexpr const char *kTokenTtlSeconds = "21600";
constexpr const char *kMessage = "could not obtain S3 credentials from the instance metadata service (IMDS)";
constexpr const char *kHint = "Check reportstore.imds_endpoint, and that the database server runs on an EC2 instance "
                              "with an instance profile (an IAM role); in a container the instance's metadata "
                              "hop limit must be at least 2.";

using JsonObject = std::vector<std::pair<std::string, std::string>>;

// --- A flat JSON object (what IMDS answers): names to values -----------------

class JsonReader {
  public:
	explicit JsonReader(std::string_view s) : s_(s) {}

	// Strings are unescaped; numbers, true, false and null are kept as written.
	// False when malformed, nested or followed by anything but blanks.
	bool ReadObject(JsonObject *out) {
		Blanks();
		if (!Take('{'))
			return false;
		Blanks();
		if (Take('}'))
			return AtEnd();
		for (;;) {
			std::string name, value;
			Blanks();
			if (!String(&name))
				return false;
			Blanks();
			if (!Take(':'))
				return false;
			Blanks();
			if (!Value(&value))
				return false;
			out->emplace_back(std::move(name), std::move(value));
			Blanks();
			if (Take('}'))
				return AtEnd();
			if (!Take(','))
				return false;
		}
	}

  private:
	bool AtEnd() {
		Blanks();
		return pos_ == s_.size();
	}
	void Blanks() {
		while (pos_ < s_.size() && strings::IsBlank(s_[pos_]))
			++pos_;
	}
	bool Take(char c) {
		if (pos_ < s_.size() && s_[pos_] == c) {
			++pos_;
			return true;
		}
		return false;
	}
	bool Hex4(unsigned *out) {
		if (pos_ + 4 > s_.size())
			return false;
		unsigned v = 0;
		for (int i = 0; i < 4; i++) {
			const char c = s_[pos_++];
			if (!strings::IsHexDigit(c))
				return false;
			v = v * 16 + static_cast<unsigned>(strings::IsDigit(c) ? c - '0' : strings::Lower(c) - 'a' + 10);
		}
		*out = v;
		return true;
	}
	static void Utf8(unsigned cp, std::string *out) {
		if (cp < 0x80) {
			out->push_back(static_cast<char>(cp));
		} else if (cp < 0x800) {
			out->push_back(static_cast<char>(0xC0 | (cp >> 6)));
			out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
		} else if (cp < 0x10000) {
			out->push_back(static_cast<char>(0xE0 | (cp >> 12)));
			out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
			out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
		} else {
			out->push_back(static_cast<char>(0xF0 | (cp >> 18)));
			out->push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
			out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
			out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
		}
	}
	bool String(std::string *out) {
		if (!Take('"'))
			return false;
		while (pos_ < s_.size()) {
			const char c = s_[pos_++];
			if (c == '"')
				return true;
			if (static_cast<unsigned char>(c) < 0x20)
				return false;
			if (c != '\\') {
				out->push_back(c);
				continue;
			}
			if (pos_ >= s_.size())
				return false;
			const char e = s_[pos_++];
			switch (e) {
			case '"':
			case '\\':
			case '/':
				out->push_back(e);
				break;
			case 'b':
				out->push_back('\b');
				break;
			case 'f':
				out->push_back('\f');
				break;
			case 'n':
				out->push_back('\n');
				break;
			case 'r':
				out->push_back('\r');
				break;
			case 't':
				out->push_back('\t');
				break;
			case 'u': {
				unsigned cp;
				if (!Hex4(&cp))
					return false;
				if (cp >= 0xD800 && cp < 0xDC00) {
					unsigned low;
					if (!Take('\\') || !Take('u') || !Hex4(&low) || low < 0xDC00 || low >= 0xE000)
						return false;
					cp = 0x10000 + ((cp - 0xD800) << 10) + (low - 0xDC00);
				} else if (cp >= 0xDC00 && cp < 0xE000) {
					return false;
				}
				Utf8(cp, out);
				break;
			}
			default:
				return false;
			}
		}
		return false;
	}
	bool Value(std::string *out) {
		if (pos_ < s_.size() && s_[pos_] == '"')
			return String(out);
		for (const char *literal : {"true", "false", "null"}) {
			const std::string_view l(literal);
			if (s_.substr(pos_, l.size()) == l) {
				pos_ += l.size();
				*out = l;
				return true;
			}
		}
		const std::size_t start = pos_;
		while (pos_ < s_.size() && (strings::IsDigit(s_[pos_]) || std::string_view("+-.eE").find(s_[pos_]) !=
		                                                                   std::string_view::npos))
			++pos_;
		if (pos_ == start)
			return false; // an object, an array or garbage
		*out = std::string(s_.substr(start, pos_ - start));
		return true;
	}

	std::string_view s_;
	std::size_t pos_ = 0;
};

const std::string *Member(const JsonObject &object, std::string_view name) {
	for (const auto &m : object)
		if (m.first == name)
			return &m.second;
	return nullptr;
}

[[noreturn]] void Malformed(const std::string &why) {
	throw Error(ErrorKind::kSystemic, sqlstate::kProtocolViolation, kMessage,
	            "The answer is not the instance metadata service's: " + why + ".", kHint);
}

std::string Printable(const JsonObject &object, const char *name, std::size_t max_bytes) {
	const std::string *v = Member(object, name);
	if (v == nullptr || v->empty())
		Malformed(std::string("the role's credentials have no ") + name);
	if (v->size() > max_bytes || !strings::IsPrintable(*v))
		Malformed(std::string("the ") + name + " is longer than " + std::to_string(max_bytes) +
		          " bytes or has non-printable characters");
	return *v;
}

// One IMDS request; `step` names it in messages. Secrets (the IMDS token)
// never reach the message.
class Imds {
  public:
	Imds(http::Engine &engine, const ImdsConfig &config, const http::InterruptProbe &probe)
	    : engine_(engine), config_(config), probe_(probe) {}

	std::string Call(const char *method, const std::string &path, const char *step, http::Headers headers,
	                 const std::string &secret) {
		http::Request r;
		r.method = method;
		r.url = config_.endpoint.Origin() + path;
		r.headers.emplace_back("Host", config_.endpoint.HostHeader());
		for (auto &h : headers)
			r.headers.push_back(std::move(h));
		r.timeout_ms = config_.timeout_ms;
		r.connect_timeout_ms = config_.connect_timeout_ms;
		r.max_response_bytes = kMaxImdsResponseBytes;
		r.no_proxy = true; // a proxy would ask its own host's metadata service
		const http::Response resp = engine_.PerformOne(r, probe_);
		const std::string where = std::string(step) + " (" + method + " " + path + ") at " +
		                          config_.endpoint.Origin();
		auto clean = [&](std::string_view text) {
			return strings::Clean(strings::Redact(std::string(text), {secret}), kMaxServerText);
		};
		if (resp.transport == http::TransportStatus::kInterrupted)
			throw Error(ErrorKind::kInterrupted, sqlstate::kQueryCanceled, kMessage, "The request was interrupted.");
		if (resp.transport == http::TransportStatus::kTimeout)
			throw Error(ErrorKind::kSystemic, sqlstate::kUnableToConnect, kMessage,
			            where + ": no answer within " + std::to_string(config_.timeout_ms) + " ms (" +
			                clean(resp.transport_error) + ").",
			            kHint);
		if (resp.transport != http::TransportStatus::kOk)
			throw Error(ErrorKind::kSystemic, sqlstate::kUnableToConnect, kMessage,
			            where + ": " + clean(resp.transport_error) + ".", kHint);
		if (resp.status == 200)
			return resp.body;
		// The body is not repeated: nothing IMDS says in it is needed, and it
		// could hold what must stay secret.
		const std::string detail = where + ": HTTP " + std::to_string(resp.status) + ".";
		if (resp.status == 404 && std::string(path) == kRolesPath)
			throw Error(ErrorKind::kSystemic, sqlstate::kInvalidAuthorization, kMessage,
			            detail + " The instance has no IAM role.",
			            "Attach an instance profile (an IAM role allowed to use the bucket) to the instance.");
		if (resp.status >= 500 || resp.status == 429)
			throw Error(ErrorKind::kSystemic, sqlstate::kUnableToConnect, kMessage, detail, kHint);
		throw Error(ErrorKind::kSystemic, sqlstate::kInvalidAuthorization, kMessage, detail,
		            resp.status == 403 || resp.status == 405
		                ? "The instance metadata service refused an IMDSv2 session token: check that it is "
		                  "enabled (HttpEndpoint) on the instance."
		                : kHint);
	}

  private:
	http::Engine &engine_;
	const ImdsConfig &config_;
	const http::InterruptProbe &probe_;
};

bool IsRoleName(std::string_view name) {
	return !name.empty() && name.size() <= 128 && std::all_of(name.begin(), name.end(), [](char c) {
		return strings::IsAlnum(c) || std::string_view("+=,.@_-").find(c) != std::string_view::npos;
	});
}

} // namespace

TimedCredentials ParseImdsCredentials(std::string_view json) {
	if (json.size() > kMaxImdsResponseBytes)
		Malformed("the credentials document is larger than " + std::to_string(kMaxImdsResponseBytes) + " bytes");
	JsonObject object;
	if (!JsonReader(json).ReadObject(&object))
		Malformed("the credentials document is not a JSON object of names and values");
	const std::string *code = Member(object, "Code");
	if (code != nullptr && *code != "Success") {
		const std::string *message = Member(object, "Message");
		throw Error(ErrorKind::kSystemic, sqlstate::kInvalidAuthorization, kMessage,
		            "The role's credentials are not available: Code " + strings::Clean(*code, kMaxServerText) +
		                (message ? ": " + strings::Clean(*message, kMaxServerText) : std::string()) + ".",
		            kHint);
	}
	TimedCredentials out;
	out.credentials.access_key_id = Printable(object, "AccessKeyId", 256);
	out.credentials.secret_access_key = Printable(object, "SecretAccessKey", 256);
	out.credentials.session_token = Printable(object, "Token", kMaxSessionTokenBytes);
	const std::string expiration = Printable(object, "Expiration", 64);
	if (!ParseIso8601Utc(expiration, &out.expiration))
		Malformed("invalid Expiration \"" + strings::Clean(expiration, 64) + "\"");
	return out;
}

TimedCredentials FetchInstanceCredentials(http::Engine &engine, const ImdsConfig &config,
                                          const http::InterruptProbe &probe) {
	Imds imds(engine, config, probe);
	std::string token(strings::Trim(imds.Call("PUT", kTokenPath, "IMDSv2 session token request",
	                                          {{"X-aws-ec2-metadata-token-ttl-seconds", kTokenTtlSeconds}}, "")));
	if (token.empty() || token.size() > 4096 || !strings::IsPrintable(token))
		Malformed("the IMDSv2 session token is empty, too long or has non-printable characters");
	const http::Headers auth = {{"X-aws-ec2-metadata-token", token}};
	const std::string roles = imds.Call("GET", kRolesPath, "role lookup", auth, token);
	const std::string_view first = strings::Trim(std::string_view(roles).substr(0, roles.find('\n')));
	if (!IsRoleName(first))
		Malformed("the role lookup did not return a role name");
	const std::string role(first);
	const std::string json = imds.Call("GET", kRolesPath + role, "credentials request", auth, token);
	return ParseImdsCredentials(json);
}

} // namespace reportstore::aws
