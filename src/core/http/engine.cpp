// HTTP transfers over libcurl's multi interface. See engine.hpp.
//
// Nothing in this file throws out of a libcurl callback: every callback
// catches everything and returns the value that makes libcurl abort the
// transfer. No global object with a non-trivial destructor exists (the
// library is loaded into PostgreSQL processes that exit with exit()).
#include "core/http/engine.hpp"

#include <curl/curl.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <deque>
#include <limits>
#include <mutex>

#include "core/error.hpp"
#include "core/handle.hpp"
#include "core/strings.hpp"

namespace reportstore::http {

namespace {

using EasyPtr = Handle<CURL, curl_easy_cleanup>;
using MultiPtr = Handle<CURLM, curl_multi_cleanup>;
using SlistPtr = Handle<curl_slist, curl_slist_free_all>;

constexpr std::size_t kMaxIdleHandles = 32;
constexpr std::size_t kMaxHeaderBytes = 256 * 1024; // all response headers together
constexpr long kPollTimeoutMs = 100;

// State of one transfer; owned by Perform() and pointed to by CURLOPT_PRIVATE
// and the callbacks' user data.
struct Transfer {
	std::size_t index = 0;
	const Request *request = nullptr;
	Response *response = nullptr;
	EasyPtr easy;
	SlistPtr header_list;
	std::size_t read_offset = 0;
	std::size_t header_bytes = 0;
	bool head = false;
	bool too_large = false;
	bool callback_failed = false;
	std::chrono::steady_clock::time_point start;
	char errbuf[CURL_ERROR_SIZE] = {};
};

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

} // namespace

long Timeouts::Scaled(std::uint64_t bytes) const {
	constexpr std::uint64_t kMiB = 1024 * 1024;
	const std::uint64_t mibs = bytes / kMiB + (bytes % kMiB != 0 ? 1 : 0);
	const long max = std::numeric_limits<long>::max() / 2;
	if (per_mib_ms > 0 && mibs > static_cast<std::uint64_t>(max / per_mib_ms))
		return max;
	const long extra = static_cast<long>(mibs) * std::max(per_mib_ms, 0L);
	if (extra > max - request_ms)
		return max;
	return request_ms + extra;
}

const char *TransportStatusName(TransportStatus s) {
	switch (s) {
	case TransportStatus::kOk:
		return "ok";
	case TransportStatus::kTimeout:
		return "timeout";
	case TransportStatus::kConnectFailed:
		return "connect failed";
	case TransportStatus::kResolveFailed:
		return "resolve failed";
	case TransportStatus::kTlsError:
		return "TLS error";
	case TransportStatus::kConnectionLost:
		return "connection lost";
	case TransportStatus::kInterrupted:
		return "interrupted";
	case TransportStatus::kTooLarge:
		return "response too large";
	case TransportStatus::kOther:
		return "other";
	}
	return "unknown";
}

const std::string *Response::Header(std::string_view lowercase_name) const {
	for (const auto &h : headers)
		if (h.first == lowercase_name)
			return &h.second;
	return nullptr;
}

void GlobalInit() {
	static std::once_flag once; // trivially destructible
	std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
}

struct Engine::Impl {
	TlsOptions tls;
	long connect_timeout_ms = 5000;
	MultiPtr multi;
	std::vector<EasyPtr> idle; // pooled easy handles (reset before each use)

	EasyPtr Acquire() {
		if (!idle.empty()) {
			EasyPtr h = std::move(idle.back());
			idle.pop_back();
			curl_easy_reset(h.get());
			return h;
		}
		EasyPtr h(curl_easy_init());
		if (!h)
			throw Error(ErrorKind::kInternal, sqlstate::kOutOfMemory, "could not create an HTTP transfer handle");
		return h;
	}

	void Release(EasyPtr h) {
		if (!h)
			return;
		if (idle.size() < kMaxIdleHandles) {
			try {
				idle.push_back(std::move(h));
			} catch (...) {
				// h is destroyed (cleaned up) by the unique_ptr
			}
		}
	}

	// Configures the easy handle of t. Returns false (with t->response
	// filled) when the request is invalid.
	bool Setup(Transfer *t);
};

bool Engine::Impl::Setup(Transfer *t) {
	const Request &req = *t->request;
	Response &resp = *t->response;
	CURL *h = t->easy.get();

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
	if (!append("Expect:") || (req.method == "POST" && !has_content_type && !append("Content-Type:")))
		throw Error(ErrorKind::kInternal, sqlstate::kOutOfMemory, "out of memory building HTTP headers");
	t->header_list = std::move(list);

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
	                 std::max(req.connect_timeout_ms > 0 ? req.connect_timeout_ms : connect_timeout_ms, 1L));
	curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, tls.verify ? 1L : 0L);
	curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, tls.verify ? 2L : 0L);
	if (!tls.ca_file.empty())
		curl_easy_setopt(h, CURLOPT_CAINFO, tls.ca_file.c_str());
	curl_easy_setopt(h, CURLOPT_USERAGENT, "reportstore");
	curl_easy_setopt(h, CURLOPT_ERRORBUFFER, t->errbuf);
	curl_easy_setopt(h, CURLOPT_PRIVATE, t);
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, &WriteCallback);
	curl_easy_setopt(h, CURLOPT_WRITEDATA, t);
	curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, &HeaderCallback);
	curl_easy_setopt(h, CURLOPT_HEADERDATA, t);
	curl_easy_setopt(h, CURLOPT_READFUNCTION, &ReadCallback);
	curl_easy_setopt(h, CURLOPT_READDATA, t);
	curl_easy_setopt(h, CURLOPT_SEEKFUNCTION, &SeekCallback);
	curl_easy_setopt(h, CURLOPT_SEEKDATA, t);
	curl_easy_setopt(h, CURLOPT_HTTPHEADER, t->header_list.get());

	const auto body_size = static_cast<curl_off_t>(req.body.size());
	if (req.method == "GET") {
		curl_easy_setopt(h, CURLOPT_HTTPGET, 1L);
	} else if (req.method == "HEAD") {
		curl_easy_setopt(h, CURLOPT_NOBODY, 1L);
		t->head = true;
	} else if (req.method == "PUT") {
		curl_easy_setopt(h, CURLOPT_UPLOAD, 1L);
		curl_easy_setopt(h, CURLOPT_INFILESIZE_LARGE, body_size);
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

Engine::Engine(TlsOptions tls) : impl_(std::make_unique<Impl>()) {
	GlobalInit();
	impl_->tls = std::move(tls);
	impl_->multi.reset(curl_multi_init());
	if (!impl_->multi)
		throw Error(ErrorKind::kInternal, sqlstate::kOutOfMemory, "could not create the HTTP engine");
}

Engine::~Engine() {
	// Easy handles are never left attached to the multi handle (Perform
	// removes them), so the order does not matter; drop them first anyway.
	impl_->idle.clear();
	impl_->multi.reset();
}

void Engine::SetTls(const TlsOptions &tls) {
	impl_->tls = tls;
}

void Engine::SetConnectTimeout(long ms) {
	impl_->connect_timeout_ms = ms > 0 ? ms : 1;
}

std::vector<Response> Engine::Perform(const std::vector<Request> &requests, int max_concurrency,
                                      const InterruptProbe &probe,
                                      const std::function<void(std::size_t, Response &)> &on_complete) {
	std::vector<Response> responses(requests.size());
	if (requests.empty())
		return responses;
	const std::size_t limit = static_cast<std::size_t>(std::max(max_concurrency, 1));
	CURLM *multi = impl_->multi.get();

	// Transfers in flight, keyed by position; removed from the multi handle
	// by the guard below whatever happens (exceptions from on_complete).
	std::vector<std::unique_ptr<Transfer>> active;
	active.reserve(limit);
	struct Guard {
		Impl *impl;
		CURLM *multi;
		std::vector<std::unique_ptr<Transfer>> *active;
		~Guard() {
			for (auto &t : *active) {
				if (t && t->easy) {
					curl_multi_remove_handle(multi, t->easy.get());
					impl->Release(std::move(t->easy));
				}
			}
			active->clear();
		}
	} guard{impl_.get(), multi, &active};

	std::size_t next = 0;
	std::size_t done = 0;
	auto finish = [&](std::size_t index) {
		++done;
		if (on_complete)
			on_complete(index, responses[index]);
	};

	while (done < requests.size()) {
		if (probe && probe()) {
			std::vector<std::size_t> unfinished;
			for (auto &t : active) {
				curl_multi_remove_handle(multi, t->easy.get());
				impl_->Release(std::move(t->easy));
				Response &r = *t->response;
				r.transport = TransportStatus::kInterrupted;
				r.transport_error = "transfer interrupted";
				r.status = 0;
				r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t->start).count();
				unfinished.push_back(t->index);
			}
			active.clear();
			for (; next < requests.size(); ++next) {
				responses[next].transport = TransportStatus::kInterrupted;
				responses[next].transport_error = "transfer interrupted";
				unfinished.push_back(next);
			}
			std::sort(unfinished.begin(), unfinished.end());
			for (std::size_t i : unfinished)
				finish(i);
			break;
		}

		// Start transfers up to the concurrency limit.
		while (active.size() < limit && next < requests.size()) {
			const std::size_t index = next++;
			auto t = std::make_unique<Transfer>();
			t->index = index;
			t->request = &requests[index];
			t->response = &responses[index];
			t->easy = impl_->Acquire();
			t->start = std::chrono::steady_clock::now();
			if (!impl_->Setup(t.get())) {
				impl_->Release(std::move(t->easy));
				finish(index);
				continue;
			}
			CURLMcode mc = curl_multi_add_handle(multi, t->easy.get());
			if (mc != CURLM_OK) {
				impl_->Release(std::move(t->easy));
				throw Error(ErrorKind::kInternal, sqlstate::kOutOfMemory, "could not start an HTTP transfer",
				            curl_multi_strerror(mc));
			}
			active.push_back(std::move(t));
		}
		if (done >= requests.size())
			break;

		int running = 0;
		CURLMcode mc = curl_multi_perform(multi, &running);
		if (mc != CURLM_OK && mc != CURLM_CALL_MULTI_PERFORM)
			throw Error(ErrorKind::kInternal, sqlstate::kInternalError, "HTTP engine failure", curl_multi_strerror(mc));

		int queued = 0;
		bool freed_a_slot = false;
		while (CURLMsg *msg = curl_multi_info_read(multi, &queued)) {
			if (msg->msg != CURLMSG_DONE)
				continue;
			CURL *easy = msg->easy_handle;
			const CURLcode code = msg->data.result;
			auto it = std::find_if(active.begin(), active.end(),
			                       [&](const std::unique_ptr<Transfer> &t) { return t->easy.get() == easy; });
			if (it == active.end())
				continue;
			std::unique_ptr<Transfer> t = std::move(*it);
			active.erase(it);
			Response &r = *t->response;
			r.transport = MapCurlCode(code, *t);
			if (t->callback_failed && r.transport != TransportStatus::kTooLarge)
				r.transport = TransportStatus::kOther;
			r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t->start).count();
			if (r.transport == TransportStatus::kOk) {
				long status = 0;
				curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &status);
				r.status = status;
				r.transport_error.clear();
			} else {
				r.status = 0;
				std::string msgtext = t->errbuf[0] ? std::string(t->errbuf) : std::string(curl_easy_strerror(code));
				if (r.transport == TransportStatus::kTooLarge)
					msgtext = "response larger than " + std::to_string(t->request->max_response_bytes) + " bytes";
				else if (t->callback_failed)
					msgtext = "out of memory receiving the response";
				r.transport_error = SanitizeError(std::move(msgtext), *t->request);
			}
			curl_multi_remove_handle(multi, easy);
			impl_->Release(std::move(t->easy));
			finish(t->index);
			freed_a_slot = true;
		}
		if (done >= requests.size())
			break;
		// A finished transfer freed a slot: start the next request now rather
		// than after up to kPollTimeoutMs of waiting.
		if (freed_a_slot && next < requests.size())
			continue;
		if (!active.empty() || next < requests.size()) {
			mc = curl_multi_poll(multi, nullptr, 0, static_cast<int>(kPollTimeoutMs), nullptr);
			if (mc != CURLM_OK)
				throw Error(ErrorKind::kInternal, sqlstate::kInternalError, "HTTP engine failure",
				            curl_multi_strerror(mc));
		}
	}
	return responses;
}

Response Engine::PerformOne(const Request &request, const InterruptProbe &probe) {
	std::vector<Request> one;
	one.push_back(request); // copies the string_view only, not the body
	std::vector<Response> r = Perform(one, 1, probe);
	return std::move(r.front());
}

} // namespace reportstore::http
