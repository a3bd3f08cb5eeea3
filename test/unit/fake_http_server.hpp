// A small scripted HTTP/1.1 server on 127.0.0.1 for unit tests.
//
// Each accepted connection is served by its own thread with keep-alive, so
// tests can assert connection reuse (accepted_connections()) and concurrency
// (max_in_flight()). Responses come from a queue (Enqueue) or, when the queue
// is empty, from a handler (SetHandler); the default answers 200 with an empty
// body. Every complete request is recorded (method, target, headers, body).
#pragma once

#include <atomic>
#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

namespace reportstore::testing {

struct FakeRequest {
	std::string method;
	std::string target; // as sent, e.g. "/bucket/a%20b?versionId=1"
	std::vector<std::pair<std::string, std::string>> headers; // names lowercased, values trimmed
	std::string body;
	int connection = 0; // 1-based number of the connection it came on

	const std::string *Header(std::string_view lowercase_name) const;
	std::string Path() const;  // target without the query string
	std::string Query() const; // after '?', or empty
};

struct FakeResponse {
	int status = 200;
	std::string reason;  // default from the status
	std::vector<std::pair<std::string, std::string>> headers;
	std::string body;
	bool content_length = true; // send Content-Length (otherwise the body ends at close)
	int delay_ms = 0;           // wait before sending anything
	int body_delay_ms = 0;      // wait between the headers and the body
	long long send_body_bytes = -1; // send only that many body bytes, then close (truncation)
	bool reset = false;         // close with a TCP RST instead of FIN when closing early
	bool close = false;         // close the connection after the response
	bool no_response = false;   // close without answering at all

	static FakeResponse Status(int status, std::string body = {}) {
		FakeResponse r;
		r.status = status;
		r.body = std::move(body);
		return r;
	}
};

class FakeHttpServer {
  public:
	using Handler = std::function<FakeResponse(const FakeRequest &)>;

	FakeHttpServer();
	~FakeHttpServer();
	FakeHttpServer(const FakeHttpServer &) = delete;
	FakeHttpServer &operator=(const FakeHttpServer &) = delete;

	int port() const {
		return port_;
	}
	std::string url() const; // "http://127.0.0.1:<port>"

	void SetHandler(Handler handler);
	void Enqueue(FakeResponse response);

	std::vector<FakeRequest> Requests() const;
	std::size_t RequestCount() const;
	int accepted_connections() const {
		return accepted_.load();
	}
	int max_in_flight() const {
		return max_in_flight_.load();
	}

	// Stops accepting and closes every connection (delays are cut short).
	void Stop();

  private:
	void AcceptLoop();
	void Serve(int fd, int connection);
	FakeResponse NextResponse(const FakeRequest &req);
	bool Sleep(int ms); // false when stopping

	int listen_fd_ = -1;
	int port_ = 0;
	std::atomic<bool> stopping_{false};
	std::atomic<int> accepted_{0};
	std::atomic<int> in_flight_{0};
	std::atomic<int> max_in_flight_{0};
	mutable std::mutex mu_;
	std::condition_variable cv_;
	std::deque<FakeResponse> queue_;
	Handler handler_;
	std::vector<FakeRequest> requests_;
	std::vector<std::thread> workers_;
	std::thread acceptor_;
};

// A TCP port on 127.0.0.1 where nothing listens (bound, then closed).
int UnusedLoopbackPort();

} // namespace reportstore::testing
