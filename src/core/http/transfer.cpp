// One libcurl transfer. See transfer.hpp.
#include "core/http/transfer.hpp"

#include <algorithm>
#include <cstring>

#include "core/error.hpp"
#include "core/http/headers.hpp"
#include "core/strings.hpp"

namespace reportstore::http {

namespace {

constexpr std::size_t kMaxHeaderBytes = 256 * 1024; // all response headers together

extern "C" size_t WriteCallback(char *ptr, size_t size, size_t nmemb, void *userdata) {
	auto *t = static_cast<Transfer *>(userdata);
	try {
		const std::size_t n = size * nmemb;
		std::string &body = t->response->body;
		if (body.size() + n > t->request->max_response_bytes) {
			t->too_large = true;
			return 0; // CURLE_WRITE_ERROR
		}
		body.append(ptr, n);
		return n;
	} catch (...) {
		t->callback_failed = true;
		return 0;
	}
}

extern "C" size_t HeaderCallback(char *buffer, size_t size, size_t nitems, void *userdata) {
	auto *t = static_cast<Transfer *>(userdata);
	try {
		const std::size_t n = size * nitems;
		t->header_bytes += n;
		if (t->header_bytes > kMaxHeaderBytes) {
			t->too_large = true;
			return 0;
		}
		Header header;
		switch (ParseHeaderLine(std::string_view(buffer, n), &header)) {
		case HeaderLineKind::kStatusLine:
			// A new status line: 100 Continue, a redirect or the final
			// response. Keep only the headers of the last one.
			t->response->headers.clear();
			t->response->body.clear();
			return n;
		case HeaderLineKind::kIgnored:
			return n; // blank, folded or malformed line
		case HeaderLineKind::kHeader:
			break;
		}
		if (header.first == "content-length" && !t->head) {
			std::uint64_t len = 0;
			if (ParseContentLength(header.second, &len)) {
				if (len > t->request->max_response_bytes) {
					t->too_large = true;
					return 0;
				}
				t->response->body.reserve(static_cast<std::size_t>(len));
			}
		}
		t->response->headers.push_back(std::move(header));
		return n;
	} catch (...) {
		t->callback_failed = true;
		return 0;
	}
}

extern "C" size_t ReadCallback(char *buffer, size_t size, size_t nitems, void *userdata) {
	auto *t = static_cast<Transfer *>(userdata);
	try {
		const std::string_view body = t->request->body;
		const std::size_t room = size * nitems;
		const std::size_t left = body.size() - std::min(t->read_offset, body.size());
		const std::size_t n = std::min(room, left);
		if (n > 0)
			std::memcpy(buffer, body.data() + t->read_offset, n);
		t->read_offset += n;
		return n;
	} catch (...) {
		t->callback_failed = true;
		return CURL_READFUNC_ABORT;
	}
}

// libcurl rewinds the body when it resends a request, e.g. after a reused
// keep-alive connection turned out to be closed by the server.
extern "C" int SeekCallback(void *userdata, curl_off_t offset, int origin) {
	auto *t = static_cast<Transfer *>(userdata);
	try {
		const auto size = static_cast<curl_off_t>(t->request->body.size());
		curl_off_t pos;
		switch (origin) {
		case SEEK_SET:
			pos = offset;
			break;
		case SEEK_CUR:
			pos = static_cast<curl_off_t>(t->read_offset) + offset;
			break;
		case SEEK_END:
			pos = size + offset;
			break;
		default:
			return CURL_SEEKFUNC_CANTSEEK;
		}
		if (pos < 0 || pos > size)
			return CURL_SEEKFUNC_FAIL;
		t->read_offset = static_cast<std::size_t>(pos);
		return CURL_SEEKFUNC_OK;
	} catch (...) {
		return CURL_SEEKFUNC_FAIL;
	}
}

TransportStatus MapCurlCode(CURLcode code, const Transfer &t) {
	if (t.too_large)
		return TransportStatus::kTooLarge;
	switch (code) {
	case CURLE_OK:
		return TransportStatus::kOk;
	case CURLE_OPERATION_TIMEDOUT:
		return TransportStatus::kTimeout;
	case CURLE_COULDNT_CONNECT:
		return TransportStatus::kConnectFailed;
	case CURLE_COULDNT_RESOLVE_HOST:
	case CURLE_COULDNT_RESOLVE_PROXY:
		return TransportStatus::kResolveFailed;
	case CURLE_SSL_CONNECT_ERROR:
	case CURLE_PEER_FAILED_VERIFICATION:
	case CURLE_SSL_CERTPROBLEM:
	case CURLE_SSL_CIPHER:
	case CURLE_SSL_CACERT_BADFILE:
	case CURLE_SSL_ISSUER_ERROR:
	case CURLE_SSL_CRL_BADFILE:
	case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
	case CURLE_SSL_INVALIDCERTSTATUS:
	case CURLE_SSL_ENGINE_NOTFOUND:
	case CURLE_SSL_ENGINE_SETFAILED:
	case CURLE_SSL_ENGINE_INITFAILED:
	case CURLE_SSL_SHUTDOWN_FAILED:
	case CURLE_USE_SSL_FAILED:
		return TransportStatus::kTlsError;
	case CURLE_SEND_ERROR:
	case CURLE_RECV_ERROR:
	case CURLE_PARTIAL_FILE:
	case CURLE_GOT_NOTHING:
	case CURLE_HTTP2:
	case CURLE_HTTP2_STREAM:
		return TransportStatus::kConnectionLost;
	case CURLE_ABORTED_BY_CALLBACK:
		return TransportStatus::kInterrupted;
	default:
		return TransportStatus::kOther;
	}
}

// libcurl's messages name hosts and ports but never header values; make sure
// of it anyway, and drop any query string (presigned URLs carry a signature).
std::string SanitizeError(std::string msg, const Request &req) {
	for (const auto &h : req.headers) {
		const std::string &v = h.second;
		if (v.size() < 4)
			continue;
		for (std::size_t pos = msg.find(v); pos != std::string::npos; pos = msg.find(v, pos))
			msg.replace(pos, v.size(), "[redacted]");
	}
	const std::size_t q = req.url.find('?');
	if (q != std::string::npos) {
		const std::string query = req.url.substr(q);
		for (std::size_t pos = msg.find(query); pos != std::string::npos; pos = msg.find(query, pos))
			msg.replace(pos, query.size(), "?[redacted]");
	}
	return msg;
}

double SecondsSince(std::chrono::steady_clock::time_point start) {
	return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

} // namespace

bool Transfer::Setup(const TlsOptions &tls, long default_connect_timeout_ms) {
	const Request &req = *request;
	Response &resp = *response;
	CURL *h = easy.get();

	// Reject header injection and methods we do not speak.
	static constexpr const char *kMethods[] = {"GET", "PUT", "HEAD", "DELETE", "POST"};
	if (std::find_if(std::begin(kMethods), std::end(kMethods), [&](const char *m) { return req.method == m; }) ==
	    std::end(kMethods)) {
		resp.transport = TransportStatus::kOther;
		resp.transport_error = "unsupported HTTP method";
		return false;
	}
	if (HasLineBreak(req.url) || req.url.find(' ') != std::string::npos) {
		resp.transport = TransportStatus::kOther;
		resp.transport_error = "the URL contains a space or a line break";
		return false;
	}
	SlistPtr list;
	auto append = [&](const std::string &line) -> bool {
		curl_slist *n = curl_slist_append(list.get(), line.c_str());
		if (!n)
			return false;
		(void)list.release();
		list.reset(n);
		return true;
	};
	bool has_content_type = false;
	for (const auto &hdr : req.headers) {
		if (hdr.first.empty() || HasLineBreak(hdr.first) || HasLineBreak(hdr.second) ||
		    hdr.first.find_first_of(": \t") != std::string::npos) {
			resp.transport = TransportStatus::kOther;
			resp.transport_error =
			    "invalid request header (name \"" + (HasLineBreak(hdr.first) ? std::string("?") : hdr.first) + "\")";
			return false;
		}
		if (strings::Lower(hdr.first) == "content-type")
			has_content_type = true;
		// "Name;" sends a header with an empty value ("Name:" would remove it).
		const std::string line = hdr.second.empty() ? hdr.first + ";" : hdr.first + ": " + hdr.second;
		if (!append(line))
			throw Error(ErrorKind::kInternal, sqlstate::kOutOfMemory, "out of memory building HTTP headers");
	}
	// No "Expect: 100-continue" round trip; no default form content type.
	const bool sends_fields = req.method == "POST" || req.method == "PUT";
	if (!append("Expect:") || (sends_fields && !has_content_type && !append("Content-Type:")))
		throw Error(ErrorKind::kInternal, sqlstate::kOutOfMemory, "out of memory building HTTP headers");
	header_list = std::move(list);

	curl_easy_setopt(h, CURLOPT_URL, req.url.c_str());
	curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(h, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L);
	curl_easy_setopt(h, CURLOPT_PATH_AS_IS, 1L); // send "/a/../b" keys as signed
	curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(h, CURLOPT_TCP_KEEPALIVE, 1L);
	curl_easy_setopt(h, CURLOPT_TCP_KEEPIDLE, 30L);
	curl_easy_setopt(h, CURLOPT_TCP_KEEPINTVL, 15L);
	curl_easy_setopt(h, CURLOPT_HTTP_VERSION, static_cast<long>(CURL_HTTP_VERSION_1_1));
	curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, std::max(req.timeout_ms, 1L));
	curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS,
	                 std::max(req.connect_timeout_ms > 0 ? req.connect_timeout_ms : default_connect_timeout_ms, 1L));
	curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, tls.verify ? 1L : 0L);
	curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, tls.verify ? 2L : 0L);
	if (!tls.ca_file.empty())
		curl_easy_setopt(h, CURLOPT_CAINFO, tls.ca_file.c_str());
	if (req.no_proxy)
		curl_easy_setopt(h, CURLOPT_NOPROXY, "*");
	curl_easy_setopt(h, CURLOPT_USERAGENT, "reportstore");
	curl_easy_setopt(h, CURLOPT_ERRORBUFFER, errbuf);
	curl_easy_setopt(h, CURLOPT_PRIVATE, this);
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, &WriteCallback);
	curl_easy_setopt(h, CURLOPT_WRITEDATA, this);
	curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, &HeaderCallback);
	curl_easy_setopt(h, CURLOPT_HEADERDATA, this);
	curl_easy_setopt(h, CURLOPT_READFUNCTION, &ReadCallback);
	curl_easy_setopt(h, CURLOPT_READDATA, this);
	curl_easy_setopt(h, CURLOPT_SEEKFUNCTION, &SeekCallback);
	curl_easy_setopt(h, CURLOPT_SEEKDATA, this);
	curl_easy_setopt(h, CURLOPT_HTTPHEADER, header_list.get());

	const auto body_size = static_cast<curl_off_t>(req.body.size());
	if (req.method == "GET") {
		curl_easy_setopt(h, CURLOPT_HTTPGET, 1L);
	} else if (req.method == "HEAD") {
		curl_easy_setopt(h, CURLOPT_NOBODY, 1L);
		head = true;
	} else if (req.method == "PUT") {
		// Sent from the request's own buffer, not copied through the read
		// callback, and a small body goes out with the headers in one write.
		curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, "PUT");
		curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, body_size);
		curl_easy_setopt(h, CURLOPT_POSTFIELDS, req.body.empty() ? "" : req.body.data());
	} else if (req.method == "POST") {
		curl_easy_setopt(h, CURLOPT_POST, 1L);
		curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, body_size);
	} else { // DELETE
		curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, req.method.c_str());
		if (!req.body.empty()) {
			curl_easy_setopt(h, CURLOPT_UPLOAD, 1L);
			curl_easy_setopt(h, CURLOPT_INFILESIZE_LARGE, body_size);
		}
	}
	return true;
}

void Transfer::Finish(CURLcode code) {
	Response &r = *response;
	r.transport = MapCurlCode(code, *this);
	if (callback_failed && r.transport != TransportStatus::kTooLarge)
		r.transport = TransportStatus::kOther;
	r.seconds = SecondsSince(start);
	if (r.transport == TransportStatus::kOk) {
		long status = 0;
		curl_easy_getinfo(easy.get(), CURLINFO_RESPONSE_CODE, &status);
		r.status = status;
		r.transport_error.clear();
		return;
	}
	r.status = 0;
	std::string why = errbuf[0] ? std::string(errbuf) : std::string(curl_easy_strerror(code));
	if (r.transport == TransportStatus::kTooLarge)
		why = "response larger than " + std::to_string(request->max_response_bytes) + " bytes";
	else if (callback_failed)
		why = "out of memory receiving the response";
	r.transport_error = SanitizeError(std::move(why), *request);
}

void Transfer::End(TransportStatus status, const char *why) {
	Response &r = *response;
	r.transport = status;
	r.transport_error = why;
	r.status = 0;
	r.seconds = SecondsSince(start);
}

} // namespace reportstore::http
