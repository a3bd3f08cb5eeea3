// One libcurl transfer of the engine (internal to src/core/http): the easy
// handle set up from a Request, the callbacks that fill its Response, and
// the mapping of libcurl's result.
//
// The callbacks never throw and call nothing that can: each catches
// everything and returns the value that makes libcurl abort the transfer.
#pragma once

#include <curl/curl.h>

#include <chrono>
#include <cstddef>

#include "core/handle.hpp"
#include "core/http/engine.hpp"

namespace reportstore::http {

using EasyPtr = Handle<CURL, curl_easy_cleanup>;
using SlistPtr = Handle<curl_slist, curl_slist_free_all>;

// State of one transfer; owned by Engine::Perform and pointed to by the
// callbacks' user data, so it must not move while libcurl runs it.
struct Transfer {
	std::size_t index = 0; // of the request in the batch
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

	Transfer() = default;
	Transfer(const Transfer &) = delete;
	Transfer &operator=(const Transfer &) = delete;

	// Configures easy for *request. Returns false, with the response filled
	// in, when the request is invalid (method, URL or header injection).
	// Throws reportstore::Error when out of memory.
	bool Setup(const TlsOptions &tls, long default_connect_timeout_ms);

	// Fills the response from libcurl's result of the transfer.
	void Finish(CURLcode code);

	// Ends the transfer without a response: `status` (interrupted, not sent).
	void End(TransportStatus status, const char *why);
};

} // namespace reportstore::http
