// Parsing of S3 XML bodies with libxml2 (through core/xml_doc.hpp: no
// network access, no entities, no DTD, bounded input). See xml.hpp.
#include "core/s3/xml.hpp"

#include <cstring>
#include <limits>

#include "core/error.hpp"
#include "core/strings.hpp"
#include "core/xml_doc.hpp"

namespace reportstore::s3 {

namespace {

constexpr std::size_t kMaxErrorBodyBytes = 1u << 20;     // S3 error bodies are < 1 KiB
constexpr std::size_t kMaxListBodyBytes = 32u << 20;     // 1000 keys of 1 KiB, with room
constexpr std::size_t kMaxLifecycleBodyBytes = 4u << 20; // 1000 rules, with room
constexpr std::size_t kMaxMultipartBodyBytes = 1u << 20; // a few hundred bytes in practice
constexpr std::size_t kMaxUploadIdBytes = 1024;

using xml::DocPtr;
using xml::IsLocal;
using xml::RootName;
using xml::Text;

// Element with local name `name` in no namespace or the S3 namespace.
bool IsElement(const xmlNode *n, const char *name) {
	if (!n || n->type != XML_ELEMENT_NODE || !n->name)
		return false;
	if (std::strcmp(reinterpret_cast<const char *>(n->name), name) != 0)
		return false;
	if (!n->ns || !n->ns->href)
		return true;
	// AWS and MinIO use the first namespace, s3rver the second.
	const char *href = reinterpret_cast<const char *>(n->ns->href);
	return std::strcmp(href, "http://s3.amazonaws.com/doc/2006-03-01/") == 0 ||
	       std::strcmp(href, "http://doc.s3.amazonaws.com/2006-03-01/") == 0;
}

// An ETag's quotes, also when a server escaped them twice ("&amp;quot;").
std::string StripEtagQuotes(std::string_view s) {
	if (s.size() >= 12 && strings::StartsWith(s, "&quot;") && strings::EndsWith(s, "&quot;"))
		return std::string(s.substr(6, s.size() - 12));
	return strings::StripQuotes(s);
}

[[noreturn]] void Malformed(const std::string &detail, const char *what = "ListObjectsV2 response") {
	throw Error(ErrorKind::kProtocol, sqlstate::kProtocolViolation, std::string("could not parse S3 ") + what, detail,
	            "The answer does not follow the S3 API, and retrying will not change that. Check that "
	            "reportstore.endpoint names an S3 server (not a proxy or web server).");
}

// The children of an <Error> element; `is` decides which namespaces count.
ErrorBody ReadErrorBody(const xmlNode *error, bool (*is)(const xmlNode *, const char *)) {
	ErrorBody body;
	for (const xmlNode *c = error->children; c; c = c->next) {
		if (is(c, "Code"))
			body.code = Text(c);
		else if (is(c, "Message"))
			body.message = Text(c);
		else if (is(c, "Resource"))
			body.resource = Text(c);
		else if (is(c, "RequestId"))
			body.request_id = Text(c);
		else if (is(c, "BucketName"))
			body.bucket_name = Text(c);
		else if (is(c, "Key"))
			body.key = Text(c);
	}
	return body;
}

} // namespace

bool ParseErrorBody(std::string_view xml, ErrorBody *out) {
	try {
		DocPtr doc = reportstore::xml::Parse(xml, kMaxErrorBodyBytes, nullptr);
		if (!doc)
			return false;
		const xmlNode *root = xmlDocGetRootElement(doc.get());
		if (!IsElement(root, "Error"))
			return false;
		if (out)
			*out = ReadErrorBody(root, IsElement);
		return true;
	} catch (...) {
		return false; // only std::bad_alloc can get here
	}
}

ListPage ParseListObjectsV2(std::string_view xml) {
	std::string why;
	DocPtr doc = reportstore::xml::Parse(xml, kMaxListBodyBytes, &why);
	if (!doc)
		Malformed(why);
	const xmlNode *root = xmlDocGetRootElement(doc.get());
	if (!IsElement(root, "ListBucketResult"))
		Malformed("unexpected root element \"" + RootName(root) + "\"");
	ListPage page;
	for (const xmlNode *c = root->children; c; c = c->next) {
		if (IsElement(c, "Contents")) {
			ListedObject obj;
			bool have_key = false;
			for (const xmlNode *f = c->children; f; f = f->next) {
				if (IsElement(f, "Key")) {
					obj.key = Text(f);
					have_key = true;
				} else if (IsElement(f, "Size")) {
					if (!strings::ParseUint(Text(f), &obj.size))
						Malformed("invalid Size \"" + Text(f).substr(0, 40) + "\"");
				} else if (IsElement(f, "ETag")) {
					obj.etag = StripEtagQuotes(Text(f));
				} else if (IsElement(f, "LastModified")) {
					obj.last_modified = Text(f);
				}
			}
			if (!have_key || obj.key.empty())
				Malformed("a Contents element has no Key");
			page.objects.push_back(std::move(obj));
		} else if (IsElement(c, "IsTruncated")) {
			const std::string v = Text(c);
			if (v == "true")
				page.is_truncated = true;
			else if (v == "false")
				page.is_truncated = false;
			else
				Malformed("invalid IsTruncated \"" + v.substr(0, 40) + "\"");
		} else if (IsElement(c, "NextContinuationToken")) {
			page.next_continuation_token = Text(c);
		}
	}
	if (page.is_truncated && page.next_continuation_token.empty())
		Malformed("IsTruncated is true but there is no NextContinuationToken");
	return page;
}

std::vector<LifecycleRule> ParseLifecycleRules(std::string_view xml) {
	constexpr const char *kWhat = "lifecycle configuration";
	std::vector<LifecycleRule> rules;
	if (xml.empty())
		return rules;
	std::string why;
	DocPtr doc = reportstore::xml::Parse(xml, kMaxLifecycleBodyBytes, &why);
	if (!doc)
		Malformed(why, kWhat);
	const xmlNode *root = xmlDocGetRootElement(doc.get());
	if (!IsLocal(root, "LifecycleConfiguration"))
		Malformed("unexpected root element \"" + RootName(root) + "\"", kWhat);
	for (const xmlNode *r = root->children; r; r = r->next) {
		if (!IsLocal(r, "Rule"))
			continue;
		LifecycleRule rule;
		for (const xmlNode *f = r->children; f; f = f->next) {
			if (IsLocal(f, "ID")) {
				rule.id = Text(f);
			} else if (IsLocal(f, "Status")) {
				rule.status = Text(f);
			} else if (IsLocal(f, "Prefix")) { // legacy form, without Filter
				rule.prefix = Text(f);
			} else if (IsLocal(f, "Filter")) {
				for (const xmlNode *g = f->children; g; g = g->next) {
					if (IsLocal(g, "Prefix")) {
						rule.prefix = Text(g);
					} else if (IsLocal(g, "And")) {
						for (const xmlNode *a = g->children; a; a = a->next)
							if (IsLocal(a, "Prefix"))
								rule.prefix = Text(a);
					}
				}
			} else if (IsLocal(f, "Expiration")) {
				for (const xmlNode *e = f->children; e; e = e->next) {
					if (!IsLocal(e, "Days"))
						continue;
					const std::string text = Text(e);
					std::uint64_t days = 0;
					if (!strings::ParseUint(text, &days) ||
					    days > static_cast<std::uint64_t>(std::numeric_limits<int>::max()))
						Malformed("invalid Expiration Days \"" + text.substr(0, 40) + "\"", kWhat);
					rule.expiration_days = static_cast<int>(days);
				}
			} else if (IsLocal(f, "AbortIncompleteMultipartUpload")) {
				for (const xmlNode *e = f->children; e; e = e->next) {
					if (!IsLocal(e, "DaysAfterInitiation"))
						continue;
					const std::string text = Text(e);
					std::uint64_t days = 0;
					if (!strings::ParseUint(text, &days) ||
					    days > static_cast<std::uint64_t>(std::numeric_limits<int>::max()))
						Malformed("invalid DaysAfterInitiation \"" + text.substr(0, 40) + "\"", kWhat);
					rule.abort_incomplete_days = static_cast<int>(days);
				}
			}
		}
		rules.push_back(std::move(rule));
	}
	return rules;
}

UploadsPage ParseListMultipartUploads(std::string_view xml) {
	constexpr const char *kWhat = "ListMultipartUploads response";
	std::string why;
	DocPtr doc = reportstore::xml::Parse(xml, kMaxListBodyBytes, &why);
	if (!doc)
		Malformed(why, kWhat);
	const xmlNode *root = xmlDocGetRootElement(doc.get());
	if (!IsLocal(root, "ListMultipartUploadsResult"))
		Malformed("unexpected root element \"" + RootName(root) + "\"", kWhat);
	UploadsPage page;
	for (const xmlNode *c = root->children; c; c = c->next) {
		if (IsLocal(c, "Upload")) {
			IncompleteUpload upload;
			for (const xmlNode *f = c->children; f; f = f->next) {
				if (IsLocal(f, "Key"))
					upload.key = Text(f);
				else if (IsLocal(f, "UploadId"))
					upload.upload_id = Text(f);
				else if (IsLocal(f, "Initiated"))
					upload.initiated = Text(f);
			}
			if (upload.key.empty() || upload.upload_id.empty() || !XmlSafe(upload.upload_id))
				Malformed("an Upload element has no Key or UploadId", kWhat);
			page.uploads.push_back(std::move(upload));
		} else if (IsLocal(c, "IsTruncated")) {
			const std::string v = Text(c);
			if (v != "true" && v != "false")
				Malformed("invalid IsTruncated \"" + v.substr(0, 40) + "\"", kWhat);
			page.is_truncated = v == "true";
		} else if (IsLocal(c, "NextKeyMarker")) {
			page.next_key_marker = Text(c);
		} else if (IsLocal(c, "NextUploadIdMarker")) {
			page.next_upload_id_marker = Text(c);
		}
	}
	if (page.is_truncated && page.next_key_marker.empty())
		Malformed("IsTruncated is true but there is no NextKeyMarker", kWhat);
	return page;
}

std::string ParseInitiateMultipartUpload(std::string_view xml) {
	constexpr const char *kWhat = "CreateMultipartUpload response";
	std::string why;
	DocPtr doc = reportstore::xml::Parse(strings::TrimLeft(xml), kMaxMultipartBodyBytes, &why);
	if (!doc)
		Malformed(why, kWhat);
	const xmlNode *root = xmlDocGetRootElement(doc.get());
	if (!IsLocal(root, "InitiateMultipartUploadResult"))
		Malformed("unexpected root element \"" + RootName(root) + "\"", kWhat);
	std::string upload_id;
	bool found = false;
	for (const xmlNode *c = root->children; c; c = c->next) {
		if (IsLocal(c, "UploadId")) {
			upload_id = Text(c);
			found = true;
		}
	}
	if (!found || upload_id.empty())
		Malformed("the response has no UploadId", kWhat);
	if (upload_id.size() > kMaxUploadIdBytes || !strings::IsPrintable(upload_id))
		Malformed("the UploadId is too long or has non-printable characters", kWhat);
	return upload_id;
}

CompleteMultipartUploadResult ParseCompleteMultipartUpload(std::string_view xml) {
	constexpr const char *kWhat = "CompleteMultipartUpload response";
	std::string why;
	DocPtr doc = reportstore::xml::Parse(strings::TrimLeft(xml), kMaxMultipartBodyBytes, &why);
	if (!doc)
		Malformed(why, kWhat);
	const xmlNode *root = xmlDocGetRootElement(doc.get());
	CompleteMultipartUploadResult result;
	if (IsLocal(root, "Error")) {
		result.is_error = true;
		result.error = ReadErrorBody(root, IsLocal);
		return result;
	}
	// "...Response" is what moto (and botocore's own serializer) emits;
	// clients parse by member, so the root's name does not matter to them.
	if (!IsLocal(root, "CompleteMultipartUploadResult") && !IsLocal(root, "CompleteMultipartUploadResponse"))
		Malformed("unexpected root element \"" + RootName(root) + "\"", kWhat);
	for (const xmlNode *c = root->children; c; c = c->next) {
		if (IsLocal(c, "Location"))
			result.location = Text(c);
		else if (IsLocal(c, "Bucket"))
			result.bucket = Text(c);
		else if (IsLocal(c, "Key"))
			result.key = Text(c);
		else if (IsLocal(c, "ETag"))
			result.etag = StripEtagQuotes(Text(c));
	}
	// Ceph RGW 16 answers <ETag></ETag>; the caller then takes the ETag from
	// the stored object.
	return result;
}

// --- Writing -----------------------------------------------------------------

namespace {

constexpr const char *kS3Namespace = "http://s3.amazonaws.com/doc/2006-03-01/";

} // namespace

bool XmlSafe(std::string_view s) {
	for (char c : s) {
		const auto u = static_cast<unsigned char>(c);
		if ((u < 0x20 && c != '\t' && c != '\n' && c != '\r') || u == 0x7f)
			return false;
	}
	return true;
}

std::string XmlEscape(std::string_view s) {
	std::string out;
	out.reserve(s.size());
	for (char c : s) {
		switch (c) {
		case '&':
			out += "&amp;";
			break;
		case '<':
			out += "&lt;";
			break;
		case '>':
			out += "&gt;";
			break;
		case '"':
			out += "&quot;";
			break;
		case '\'':
			out += "&apos;";
			break;
		case '\r': // a literal CR would be read back as LF
			out += "&#13;";
			break;
		default:
			out += c;
		}
	}
	return out;
}

std::string CompleteMultipartUploadXml(const std::vector<std::string> &etags) {
	std::string xml = std::string("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<CompleteMultipartUpload xmlns=\"") +
	                  kS3Namespace + "\">";
	for (std::size_t i = 0; i < etags.size(); ++i)
		xml += "<Part><PartNumber>" + std::to_string(i + 1) + "</PartNumber><ETag>\"" + XmlEscape(etags[i]) +
		       "\"</ETag></Part>";
	return xml + "</CompleteMultipartUpload>";
}

std::string LifecycleExpiryDocument(const std::string &prefix, int days, int abort_days, const std::string &rule_id) {
	return std::string("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<LifecycleConfiguration xmlns=\"") + kS3Namespace +
	       "\"><Rule><ID>" + XmlEscape(rule_id) + "</ID><Filter><Prefix>" + XmlEscape(prefix) +
	       "</Prefix></Filter><Status>Enabled</Status><Expiration><Days>" + std::to_string(days) +
	       "</Days></Expiration><AbortIncompleteMultipartUpload><DaysAfterInitiation>" + std::to_string(abort_days) +
	       "</DaysAfterInitiation></AbortIncompleteMultipartUpload></Rule></LifecycleConfiguration>";
}

} // namespace reportstore::s3
