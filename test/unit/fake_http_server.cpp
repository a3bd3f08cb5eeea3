#include "fake_http_server.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cctype>
#include <chrono>
#include <cstring>
#include <stdexcept>

namespace reportstore::testing {

namespace {

std::string Lower(std::string s) {
	for (char &c : s)
		c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
	return s;
}

std::string Trim(const std::string &s) {
	std::size_t b = 0, e = s.size();
	while (b < e && (s[b] == ' ' || s[b] == '\t'))
		++b;
	while (e > b && (s[e - 1] == ' ' || s[e - 1] == '\t' || s[e - 1] == '\r'))
		--e;
	return s.substr(b, e - b);
}

const char *Reason(int status) {
	switch (status) {
	case 100:
		return "Continue";
	case 200:
		return "OK";
	case 204:
		return "No Content";
	case 301:
		return "Moved Permanently";
	case 400:
		return "Bad Request";
	case 403:
		return "Forbidden";
	case 404:
		return "Not Found";
	case 500:
		return "Internal Server Error";
	case 502:
		return "Bad Gateway";
	case 503:
		return "Service Unavailable";
	default:
		return "Status";
	}
}

bool SendAll(int fd, std::string_view data) {
	while (!data.empty()) {
		ssize_t n = ::send(fd, data.data(), data.size(), MSG_NOSIGNAL);
		if (n <= 0)
			return false;
		data.remove_prefix(static_cast<std::size_t>(n));
	}
	return true;
}

} // namespace

const std::string *FakeRequest::Header(std::string_view lowercase_name) const {
	for (const auto &h : headers)
		if (h.first == lowercase_name)
			return &h.second;
	return nullptr;
}

std::string FakeRequest::Path() const {
	return target.substr(0, target.find('?'));
}

std::string FakeRequest::Query() const {
	const std::size_t q = target.find('?');
	return q == std::string::npos ? std::string() : target.substr(q + 1);
}

FakeHttpServer::FakeHttpServer() {
	listen_fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (listen_fd_ < 0)
		throw std::runtime_error("socket() failed");
	int one = 1;
	::setsockopt(listen_fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
	sockaddr_in addr{};
	addr.sin_family = AF_INET;
	addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	addr.sin_port = 0;
	if (::bind(listen_fd_, reinterpret_cast<sockaddr *>(&addr), sizeof addr) != 0 || ::listen(listen_fd_, 64) != 0) {
		::close(listen_fd_);
		throw std::runtime_error("bind/listen failed");
	}
	socklen_t len = sizeof addr;
	::getsockname(listen_fd_, reinterpret_cast<sockaddr *>(&addr), &len);
	port_ = ntohs(addr.sin_port);
	acceptor_ = std::thread([this] { AcceptLoop(); });
}

FakeHttpServer::~FakeHttpServer() {
	Stop();
}

std::string FakeHttpServer::url() const {
	return "http://127.0.0.1:" + std::to_string(port_);
}

void FakeHttpServer::SetHandler(Handler handler) {
	std::lock_guard<std::mutex> lock(mu_);
	handler_ = std::move(handler);
}

void FakeHttpServer::Enqueue(FakeResponse response) {
	std::lock_guard<std::mutex> lock(mu_);
	queue_.push_back(std::move(response));
}

std::vector<FakeRequest> FakeHttpServer::Requests() const {
	std::lock_guard<std::mutex> lock(mu_);
	return requests_;
}

std::size_t FakeHttpServer::RequestCount() const {
	std::lock_guard<std::mutex> lock(mu_);
	return requests_.size();
}

void FakeHttpServer::Stop() {
	{
		std::lock_guard<std::mutex> lock(mu_);
		if (stopping_.exchange(true))
			return;
	}
	cv_.notify_all();
	if (acceptor_.joinable())
		acceptor_.join();
	std::vector<std::thread> workers;
	{
		std::lock_guard<std::mutex> lock(mu_);
		workers.swap(workers_);
	}
	for (auto &t : workers)
		t.join();
	if (listen_fd_ >= 0)
		::close(listen_fd_);
	listen_fd_ = -1;
}

bool FakeHttpServer::Sleep(int ms) {
	if (ms <= 0)
		return !stopping_.load();
	std::unique_lock<std::mutex> lock(mu_);
	cv_.wait_for(lock, std::chrono::milliseconds(ms), [this] { return stopping_.load(); });
	return !stopping_.load();
}

void FakeHttpServer::AcceptLoop() {
	while (!stopping_.load()) {
		pollfd p{listen_fd_, POLLIN, 0};
		int r = ::poll(&p, 1, 20);
		if (r <= 0)
			continue;
		int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
		if (fd < 0)
			continue;
		int one = 1;
		::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
		const int connection = ++accepted_;
		std::lock_guard<std::mutex> lock(mu_);
		workers_.emplace_back([this, fd, connection] { Serve(fd, connection); });
	}
}

FakeResponse FakeHttpServer::NextResponse(const FakeRequest &req) {
	Handler handler;
	{
		std::lock_guard<std::mutex> lock(mu_);
		if (!queue_.empty()) {
			FakeResponse r = std::move(queue_.front());
			queue_.pop_front();
			return r;
		}
		handler = handler_;
	}
	if (handler)
		return handler(req);
	return FakeResponse{};
}

void FakeHttpServer::Serve(int fd, int connection) {
	std::string buf;
	char chunk[65536];
	// Reads more bytes into buf; false on EOF, error or stop.
	auto fill = [&]() -> bool {
		while (!stopping_.load()) {
			pollfd p{fd, POLLIN, 0};
			int r = ::poll(&p, 1, 20);
			if (r < 0)
				return false;
			if (r == 0)
				continue;
			ssize_t n = ::recv(fd, chunk, sizeof chunk, 0);
			if (n <= 0)
				return false;
			buf.append(chunk, static_cast<std::size_t>(n));
			return true;
		}
		return false;
	};
	auto close_fd = [&](bool reset) {
		if (reset) {
			linger l{1, 0};
			::setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof l);
		}
		::close(fd);
	};

	for (;;) {
		std::size_t end;
		while ((end = buf.find("\r\n\r\n")) == std::string::npos) {
			if (!fill()) {
				close_fd(false);
				return;
			}
		}
		FakeRequest req;
		req.connection = connection;
		const std::string head = buf.substr(0, end);
		buf.erase(0, end + 4);
		std::size_t line_end = head.find("\r\n");
		const std::string request_line = head.substr(0, line_end);
		{
			const std::size_t s1 = request_line.find(' ');
			const std::size_t s2 = request_line.rfind(' ');
			req.method = request_line.substr(0, s1);
			req.target = s1 != std::string::npos && s2 > s1 ? request_line.substr(s1 + 1, s2 - s1 - 1) : "";
		}
		std::size_t pos = line_end == std::string::npos ? head.size() : line_end + 2;
		while (pos < head.size()) {
			std::size_t e = head.find("\r\n", pos);
			if (e == std::string::npos)
				e = head.size();
			const std::string line = head.substr(pos, e - pos);
			const std::size_t colon = line.find(':');
			if (colon != std::string::npos)
				req.headers.emplace_back(Lower(Trim(line.substr(0, colon))), Trim(line.substr(colon + 1)));
			pos = e + 2;
		}
		if (const std::string *expect = req.Header("expect"); expect && Lower(*expect) == "100-continue")
			SendAll(fd, "HTTP/1.1 100 Continue\r\n\r\n");
		bool ok = true;
		const std::string *te = req.Header("transfer-encoding");
		if (te && Lower(*te) == "chunked") {
			for (;;) {
				std::size_t le;
				while ((le = buf.find("\r\n")) == std::string::npos && (ok = fill()))
					;
				if (!ok)
					break;
				const std::size_t size = std::stoul(buf.substr(0, le), nullptr, 16);
				buf.erase(0, le + 2);
				while (buf.size() < size + 2 && (ok = fill()))
					;
				if (!ok)
					break;
				req.body.append(buf, 0, size);
				buf.erase(0, size + 2);
				if (size == 0)
					break;
			}
		} else if (const std::string *cl = req.Header("content-length")) {
			const std::size_t size = std::stoul(*cl);
			while (buf.size() < size && (ok = fill()))
				;
			if (ok) {
				req.body = buf.substr(0, size);
				buf.erase(0, size);
			}
		}
		if (!ok) {
			close_fd(false);
			return;
		}
		const bool client_close = req.Header("connection") && Lower(*req.Header("connection")) == "close";
		{
			std::lock_guard<std::mutex> lock(mu_);
			requests_.push_back(req);
		}
		const int now = ++in_flight_;
		int prev = max_in_flight_.load();
		while (now > prev && !max_in_flight_.compare_exchange_weak(prev, now))
			;

		FakeResponse resp = NextResponse(req);
		bool alive = Sleep(resp.delay_ms);
		if (!alive || resp.no_response) {
			--in_flight_;
			close_fd(resp.reset);
			return;
		}
		std::string out = "HTTP/1.1 " + std::to_string(resp.status) + " " +
		                  (resp.reason.empty() ? Reason(resp.status) : resp.reason) + "\r\n";
		bool has_cl = false;
		for (const auto &h : resp.headers) {
			out += h.first + ": " + h.second + "\r\n";
			if (Lower(h.first) == "content-length")
				has_cl = true;
		}
		const bool close_after = resp.close || client_close || !resp.content_length || resp.send_body_bytes >= 0;
		if (resp.content_length && !has_cl && resp.status != 204 && resp.status != 304)
			out += "Content-Length: " + std::to_string(resp.body.size()) + "\r\n";
		if (close_after)
			out += "Connection: close\r\n";
		out += "\r\n";
		alive = SendAll(fd, out);
		if (alive && resp.body_delay_ms > 0)
			alive = Sleep(resp.body_delay_ms);
		if (alive && req.method != "HEAD") {
			std::string_view body = resp.body;
			if (resp.send_body_bytes >= 0 && static_cast<std::size_t>(resp.send_body_bytes) < body.size())
				body = body.substr(0, static_cast<std::size_t>(resp.send_body_bytes));
			alive = SendAll(fd, body);
		}
		--in_flight_;
		if (!alive || close_after) {
			if (!resp.reset)
				::shutdown(fd, SHUT_WR);
			close_fd(resp.reset);
			return;
		}
	}
}

int UnusedLoopbackPort() {
	int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	sockaddr_in addr{};
	addr.sin_family = AF_INET;
	addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	::bind(fd, reinterpret_cast<sockaddr *>(&addr), sizeof addr);
	socklen_t len = sizeof addr;
	::getsockname(fd, reinterpret_cast<sockaddr *>(&addr), &len);
	::close(fd);
	return ntohs(addr.sin_port);
}

} // namespace reportstore::testing
