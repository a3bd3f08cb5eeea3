// HTTP transfers over libcurl's multi interface.
//
// One Engine lives for the whole process (a backend or the worker). It keeps a
// pool of easy handles and the multi handle's connection cache, so consecutive
// requests to the same endpoint reuse keep-alive connections. Nothing here
// touches PostgreSQL: cancellation comes through an InterruptProbe that the
// caller polls from PostgreSQL's pending-interrupt flags.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "core/http/headers.hpp"

namespace reportstore::http {

// Returns true when the caller wants every transfer stopped (query cancel,
// statement_timeout, SIGTERM). Must be cheap, must not throw.
using InterruptProbe = std::function<bool()>;

struct TlsOptions {
	bool verify = true;  // verify peer certificate and host name
	std::string ca_file; // extra CA bundle (PEM); empty = system default
};

struct Timeouts {
	long connect_ms = 5000;
	long request_ms = 30000;                // base timeout of a whole request
	long per_mib_ms = 1000;                 // added per MiB of body sent or expected
	long Scaled(std::uint64_t bytes) const; // request_ms + ceil(bytes / MiB) * per_mib_ms
};

struct Request {
	std::string method; // GET, PUT, HEAD, DELETE, POST
	std::string url;
	Headers headers;                              // sent as given (Host included if present)
	std::string_view body;                        // request body; not copied, must outlive Perform()
	long timeout_ms = 30000;                      // whole-request timeout (Timeouts::Scaled)
	long connect_timeout_ms = 0;                  // 0 = the engine's (SetConnectTimeout, default 5000)
	std::uint64_t max_response_bytes = 16u << 20; // larger responses fail (kTooLarge)
	bool no_proxy = false; // never through a proxy of the environment (the instance metadata service)
};

enum class TransportStatus {
	kOk,             // an HTTP response was received (any status code)
	kTimeout,        // connect or request timeout
	kConnectFailed,  // connection refused, host unreachable
	kResolveFailed,  // DNS failure
	kTlsError,       // certificate / handshake problem
	kConnectionLost, // reset or closed mid-transfer, truncated response
	kInterrupted,    // the InterruptProbe asked to stop
	kTooLarge,       // response exceeded max_response_bytes
	kNotSent,        // never started: Perform's stop_starting said so
	kOther,
};
const char *TransportStatusName(TransportStatus s);

struct Response {
	TransportStatus transport = TransportStatus::kOther;
	std::string transport_error; // libcurl's message; never contains credentials
	long status = 0;             // HTTP status when transport == kOk
	Headers headers;             // names lowercased, values trimmed
	std::string body;
	double seconds = 0; // total time of the transfer

	// Value of a response header (name lowercase), or nullptr.
	const std::string *Header(std::string_view lowercase_name) const;
};

// Engine::Perform's on_complete: called once per request as it ends, with
// its index and response.
using CompletionCallback = std::function<void(std::size_t, Response &)>;

// Engine::Perform's stop_starting: returns true when no further request may
// start; the transfers in flight still run to their end.
using StopStartingProbe = std::function<bool()>;

// Engine::Stream's source of requests.
enum class Pull {
	kReady,    // *out holds the next request: start it
	kWaiting,  // none now; asked again soon, or at once after Engine::Wake()
	kFinished, // no more: Stream returns once the transfers in flight have ended
};
using RequestSource = std::function<Pull(Request *out)>;

class Engine {
  public:
	explicit Engine(TlsOptions tls = {});
	~Engine();
	Engine(const Engine &) = delete;
	Engine &operator=(const Engine &) = delete;

	void SetTls(const TlsOptions &tls);
	// Connect timeout of requests whose connect_timeout_ms is 0.
	void SetConnectTimeout(long ms);
	// Longest wait for socket activity before the probe is checked again
	// (100 ms). Tests raise it to show that no result waits for it.
	void SetIdleWait(long ms);

	// Runs the requests in order with at most max_concurrency transfers in
	// flight and returns one Response per request, in order. Transport
	// failures are reported in Response::transport, never thrown.
	//
	// on_complete, if set, is called as each request ends so callers can act
	// on results while others are still in flight. It runs between libcurl
	// calls and may throw: Perform then detaches every transfer and rethrows.
	//
	// The probe is checked at least every idle wait; when it fires every
	// transfer is aborted and unfinished requests end with kInterrupted.
	// stop_starting is checked before each new start; once it returns true
	// the requests not started end with kNotSent while the ones in flight
	// finish normally. Throws reportstore::Error only on resource exhaustion.
	std::vector<Response> Perform(const std::vector<Request> &requests, int max_concurrency,
	                              const InterruptProbe &probe, const CompletionCallback &on_complete = {},
	                              const StopStartingProbe &stop_starting = {});

	Response PerformOne(const Request &request, const InterruptProbe &probe);

	// Like Perform, for requests that become known while others run (a
	// producer on another thread): pulls requests from `next` whenever fewer
	// than max_concurrency are in flight, and calls on_complete(index,
	// response) as each ends, index counting the requests in the order they
	// were pulled. A request's body must stay valid until its on_complete.
	// When the probe fires, the transfers in flight end as kInterrupted and
	// Stream returns without pulling more. next and on_complete may throw:
	// Stream then detaches every transfer and rethrows.
	void Stream(const RequestSource &next, int max_concurrency, const InterruptProbe &probe,
	            const CompletionCallback &on_complete);

	// Thread-safe and signal-safe: a Stream waiting for its sockets pulls
	// again at once.
	void Wake();

  private:
	struct Impl;
	std::unique_ptr<Impl> impl_;
};

// curl_global_init must run once per process before the first Engine.
void GlobalInit();

} // namespace reportstore::http
