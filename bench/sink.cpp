// bench/sink.cpp: an S3-shaped HTTP sink that accepts PUTs as fast as the
// machine allows, for measuring reportstore's own overhead (bench/run.sh).
//
//   g++ -O2 -std=c++17 -pthread bench/sink.cpp -o sink -lcrypto
//   ./sink PORT
//
// Why not nginx + the DAV module (nginx-light has it): nginx answers a PUT
// with "201 Created" and no ETag, and HEAD with an "mtime-size" ETag and no
// x-amz-meta-sha256, so reportstore (VerifyPut in src/core/s3/objects.cpp)
// rejects every upload -- correctly. bench/run.sh re-checks that each run.
//
// What it does, per request (HTTP/1.1 keep-alive, one thread per connection):
//   PUT /bucket/key   reads the body (Content-Length or chunked) and answers
//                     200 with ETag "<md5>": the Content-MD5 the client sent,
//                     or the body's real MD5 when it sent none (or when
//                     SINK_MD5=1); remembers the size and the
//                     x-amz-meta-sha256 header (not the body).
//   HEAD /bucket/key  200 with Content-Length and x-amz-meta-sha256, or 404.
//   PUT/GET /bucket   200 (bucket creation and listing are no-ops).
//   anything else     404.
// Bodies are discarded: no disk, no page cache, no copy beyond the socket read.
// The sink stands for an S3 server on other machines: a real one checks the
// Content-MD5 and stores the object; here that work would take the database
// host's own cores, which the benchmark measures, so it is skipped.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/evp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>

namespace {

struct Meta {
	unsigned long long size;
	std::string sha256;
};
std::mutex g_mutex;
std::unordered_map<std::string, Meta> g_objects;

struct Conn {
	int fd;
	char buf[256 * 1024];
	size_t start = 0, end = 0;

	// Fills the buffer; false on EOF/error.
	bool Fill() {
		if (start == end)
			start = end = 0;
		if (end == sizeof(buf)) {
			std::memmove(buf, buf + start, end - start);
			end -= start;
			start = 0;
		}
		ssize_t n;
		do
			n = read(fd, buf + end, sizeof(buf) - end);
		while (n < 0 && errno == EINTR);
		if (n <= 0)
			return false;
		end += static_cast<size_t>(n);
		return true;
	}
	bool ReadLine(std::string *line) {
		for (;;) {
			for (size_t i = start; i + 1 < end; i++) {
				if (buf[i] == '\r' && buf[i + 1] == '\n') {
					line->assign(buf + start, i - start);
					start = i + 2;
					return true;
				}
			}
			if (end - start > 64 * 1024)
				return false;
			if (!Fill())
				return false;
		}
	}
	// Consumes n body bytes into the digest.
	bool Consume(unsigned long long n, EVP_MD_CTX *md) {
		while (n > 0) {
			if (start == end && !Fill())
				return false;
			size_t take = end - start;
			if (take > n)
				take = static_cast<size_t>(n);
			if (md)
				EVP_DigestUpdate(md, buf + start, take);
			start += take;
			n -= take;
		}
		return true;
	}
	bool Write(const std::string &s) {
		size_t off = 0;
		while (off < s.size()) {
			ssize_t n = write(fd, s.data() + off, s.size() - off);
			if (n < 0 && errno == EINTR)
				continue;
			if (n <= 0)
				return false;
			off += static_cast<size_t>(n);
		}
		return true;
	}
};

bool g_always_md5 = false;

// Content-MD5 (base64 of 16 bytes) as 32 hex digits; "" when malformed.
std::string Base64Md5ToHex(const std::string &b64) {
	static const std::string kAlphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	unsigned char out[18];
	size_t n = 0;
	unsigned int acc = 0;
	int bits = 0;
	for (char ch : b64) {
		if (ch == '=')
			break;
		size_t v = kAlphabet.find(ch);
		if (v == std::string::npos || n >= sizeof(out))
			return "";
		acc = (acc << 6) | static_cast<unsigned int>(v);
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			out[n++] = static_cast<unsigned char>(acc >> bits);
		}
	}
	if (n != 16)
		return "";
	char hex[33];
	for (int i = 0; i < 16; i++)
		std::snprintf(hex + 2 * i, 3, "%02x", out[i]);
	return hex;
}

std::string Lower(std::string s) {
	for (char &c : s)
		if (c >= 'A' && c <= 'Z')
			c = static_cast<char>(c - 'A' + 'a');
	return s;
}

void Serve(int fd) {
	Conn *c = new Conn;
	c->fd = fd;
	EVP_MD_CTX *md = EVP_MD_CTX_new();
	std::string line;
	for (;;) {
		if (!c->ReadLine(&line))
			break;
		if (line.empty())
			continue;
		std::string method = line.substr(0, line.find(' '));
		size_t p1 = line.find(' ');
		size_t p2 = line.find(' ', p1 + 1);
		std::string path = line.substr(p1 + 1, p2 == std::string::npos ? std::string::npos : p2 - p1 - 1);
		std::string q;
		if (size_t qp = path.find('?'); qp != std::string::npos) {
			q = path.substr(qp + 1);
			path.resize(qp);
		}
		unsigned long long length = 0;
		bool chunked = false, expect = false, close_after = false;
		std::string sha, sent_md5;
		for (;;) {
			if (!c->ReadLine(&line))
				goto out;
			if (line.empty())
				break;
			size_t colon = line.find(':');
			if (colon == std::string::npos)
				continue;
			std::string name = Lower(line.substr(0, colon));
			size_t v = colon + 1;
			while (v < line.size() && (line[v] == ' ' || line[v] == '\t'))
				v++;
			std::string value = line.substr(v);
			if (name == "content-length")
				length = std::strtoull(value.c_str(), nullptr, 10);
			else if (name == "transfer-encoding")
				chunked = Lower(value).find("chunked") != std::string::npos;
			else if (name == "expect")
				expect = Lower(value) == "100-continue";
			else if (name == "connection")
				close_after = Lower(value) == "close";
			else if (name == "x-amz-meta-sha256")
				sha = value;
			else if (name == "content-md5")
				sent_md5 = Base64Md5ToHex(value);
		}
		if (expect && !c->Write("HTTP/1.1 100 Continue\r\n\r\n"))
			break;
		bool is_object = path.find('/', 1) != std::string::npos && path.size() > path.find('/', 1) + 1;
		bool put = method == "PUT" && is_object;
		bool hash = put && (sent_md5.empty() || g_always_md5);
		EVP_DigestInit_ex(md, EVP_md5(), nullptr);
		unsigned long long size = 0;
		if (chunked) {
			for (;;) {
				if (!c->ReadLine(&line))
					goto out;
				unsigned long long n = std::strtoull(line.c_str(), nullptr, 16);
				if (n == 0) {
					while (c->ReadLine(&line) && !line.empty()) {
					}
					break;
				}
				if (!c->Consume(n, hash ? md : nullptr) || !c->ReadLine(&line))
					goto out;
				size += n;
			}
		} else {
			if (!c->Consume(length, hash ? md : nullptr))
				break;
			size = length;
		}
		std::string resp;
		if (put) {
			char hex[33];
			if (hash) {
				unsigned char digest[16];
				unsigned int dl = 0;
				EVP_DigestFinal_ex(md, digest, &dl);
				for (int i = 0; i < 16; i++)
					std::snprintf(hex + 2 * i, 3, "%02x", digest[i]);
			} else {
				std::memcpy(hex, sent_md5.c_str(), 33);
			}
			{
				std::lock_guard<std::mutex> lock(g_mutex);
				g_objects[path] = Meta{size, sha};
			}
			resp = std::string("HTTP/1.1 200 OK\r\nETag: \"") + hex + "\"\r\nContent-Length: 0\r\n\r\n";
		} else if (method == "HEAD" && is_object) {
			Meta m{};
			bool found;
			{
				std::lock_guard<std::mutex> lock(g_mutex);
				auto it = g_objects.find(path);
				found = it != g_objects.end();
				if (found)
					m = it->second;
			}
			if (found)
				resp = "HTTP/1.1 200 OK\r\nContent-Length: " + std::to_string(m.size) +
				       (m.sha256.empty() ? "" : "\r\nx-amz-meta-sha256: " + m.sha256) + "\r\n\r\n";
			else
				resp = "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n";
		} else if (!is_object && (method == "PUT" || method == "GET" || method == "HEAD")) {
			resp = "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
		} else {
			resp = "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n";
		}
		if (!c->Write(resp) || close_after)
			break;
	}
out:
	EVP_MD_CTX_free(md);
	close(fd);
	delete c;
}

} // namespace

int main(int argc, char **argv) {
	int port = argc > 1 ? std::atoi(argv[1]) : 9520;
	const char *always = std::getenv("SINK_MD5");
	g_always_md5 = always != nullptr && std::strcmp(always, "1") == 0;
	int s = socket(AF_INET, SOCK_STREAM, 0);
	int one = 1;
	setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	sockaddr_in addr{};
	addr.sin_family = AF_INET;
	addr.sin_port = htons(static_cast<uint16_t>(port));
	addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (bind(s, reinterpret_cast<sockaddr *>(&addr), sizeof(addr)) != 0 || listen(s, 512) != 0) {
		std::perror("sink: bind/listen");
		return 1;
	}
	std::fprintf(stderr, "sink: listening on 127.0.0.1:%d\n", port);
	for (;;) {
		int fd = accept(s, nullptr, nullptr);
		if (fd < 0) {
			if (errno == EINTR || errno == ECONNABORTED)
				continue;
			std::perror("sink: accept");
			return 1;
		}
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		std::thread(Serve, fd).detach();
	}
}
