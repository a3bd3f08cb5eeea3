// HTTP transfers over libcurl's multi interface. See engine.hpp.
//
// No global object with a non-trivial destructor exists (the library is
// loaded into PostgreSQL processes that exit with exit()). The libcurl
// callbacks are in transfer.cpp; on_complete and the probes run here, between
// libcurl calls, never inside one.
#include "core/http/engine.hpp"

#include <curl/curl.h>

#include <algorithm>
#include <limits>
#include <mutex>

#include "core/error.hpp"
#include "core/handle.hpp"
#include "core/http/transfer.hpp"

namespace reportstore::http {

namespace {

using MultiPtr = Handle<CURLM, curl_multi_cleanup>;

constexpr std::size_t kMaxIdleHandles = 32;
constexpr long kPollTimeoutMs = 100;

// Easy handles kept between requests so their connections are reused.
// Waits for socket activity on multi, at most timeout_ms.
void PollMulti(CURLM *multi, long timeout_ms) {
	const CURLMcode mc = curl_multi_poll(multi, nullptr, 0, static_cast<int>(timeout_ms), nullptr);
	if (mc != CURLM_OK)
		throw Error(ErrorKind::kInternal, sqlstate::kInternalError, "HTTP engine failure", curl_multi_strerror(mc));
}

class HandlePool {
  public:
	EasyPtr Acquire() {
		if (!idle_.empty()) {
			EasyPtr h = std::move(idle_.back());
			idle_.pop_back();
			curl_easy_reset(h.get());
			return h;
		}
		EasyPtr h(curl_easy_init());
		if (!h)
			throw Error(ErrorKind::kInternal, sqlstate::kOutOfMemory, "could not create an HTTP transfer handle");
		return h;
	}

	void Release(EasyPtr h) {
		if (!h || idle_.size() >= kMaxIdleHandles)
			return;
		try {
			idle_.push_back(std::move(h));
		} catch (...) {
			// h is cleaned up by the unique_ptr
		}
	}

	void Clear() {
		idle_.clear();
	}

  private:
	std::vector<EasyPtr> idle_;
};

// One call of Engine::Perform: starts the requests in order, at most `limit`
// in flight, and ends each exactly once (its response set, on_complete
// called). The destructor detaches the transfers still attached, also when
// on_complete throws.
class Batch {
  public:
	Batch(CURLM *multi, HandlePool &pool, const TlsOptions &tls, long connect_timeout_ms,
	      const std::vector<Request> &requests, std::vector<Response> &responses, std::size_t limit,
	      const CompletionCallback &on_complete)
	    : multi_(multi), pool_(pool), tls_(tls), connect_timeout_ms_(connect_timeout_ms), requests_(requests),
	      responses_(responses), limit_(limit), on_complete_(on_complete) {
		active_.reserve(limit);
	}

	~Batch() {
		for (auto &t : active_)
			Detach(*t);
	}

	Batch(const Batch &) = delete;
	Batch &operator=(const Batch &) = delete;

	bool Done() const {
		return ended_ == requests_.size();
	}
	bool HasUnstarted() const {
		return next_ < requests_.size();
	}

	// Starts requests until `limit` are in flight or none is left.
	void Start() {
		while (active_.size() < limit_ && HasUnstarted()) {
			const std::size_t index = next_++;
			auto t = std::make_unique<Transfer>();
			t->index = index;
			t->request = &requests_[index];
			t->response = &responses_[index];
			t->easy = pool_.Acquire();
			t->start = std::chrono::steady_clock::now();
			if (!t->Setup(tls_, connect_timeout_ms_)) {
				pool_.Release(std::move(t->easy));
				End(index);
				continue;
			}
			const CURLMcode mc = curl_multi_add_handle(multi_, t->easy.get());
			if (mc != CURLM_OK) {
				pool_.Release(std::move(t->easy));
				throw Error(ErrorKind::kInternal, sqlstate::kOutOfMemory, "could not start an HTTP transfer",
				            curl_multi_strerror(mc));
			}
			active_.push_back(std::move(t));
		}
	}

	// The requests not started yet end as not sent.
	void SkipUnstarted() {
		for (; HasUnstarted(); ++next_) {
			responses_[next_].transport = TransportStatus::kNotSent;
			responses_[next_].transport_error = "not sent: the caller stopped starting requests";
			End(next_);
		}
	}

	// Aborts the transfers in flight and ends them, with the requests not
	// started yet, as interrupted, in request order.
	void Interrupt() {
		std::vector<std::size_t> unfinished;
		for (auto &t : active_) {
			Detach(*t);
			t->End(TransportStatus::kInterrupted, "transfer interrupted");
			unfinished.push_back(t->index);
		}
		active_.clear();
		for (; HasUnstarted(); ++next_) {
			responses_[next_].transport = TransportStatus::kInterrupted;
			responses_[next_].transport_error = "transfer interrupted";
			unfinished.push_back(next_);
		}
		std::sort(unfinished.begin(), unfinished.end());
		for (std::size_t i : unfinished)
			End(i);
	}

	// Lets libcurl move data, then ends the transfers that finished. Returns
	// true when one did (a slot is free).
	bool Pump() {
		int running = 0;
		const CURLMcode mc = curl_multi_perform(multi_, &running);
		if (mc != CURLM_OK && mc != CURLM_CALL_MULTI_PERFORM)
			throw Error(ErrorKind::kInternal, sqlstate::kInternalError, "HTTP engine failure", curl_multi_strerror(mc));
		bool freed_a_slot = false;
		int queued = 0;
		while (CURLMsg *msg = curl_multi_info_read(multi_, &queued)) {
			if (msg->msg != CURLMSG_DONE)
				continue;
			auto it = std::find_if(active_.begin(), active_.end(), [&](const std::unique_ptr<Transfer> &t) {
				return t->easy.get() == msg->easy_handle;
			});
			if (it == active_.end())
				continue;
			std::unique_ptr<Transfer> t = std::move(*it);
			active_.erase(it);
			t->Finish(msg->data.result);
			Detach(*t);
			End(t->index);
			freed_a_slot = true;
		}
		return freed_a_slot;
	}

	// Waits for socket activity, at most timeout_ms.
	void Wait(long timeout_ms) {
		PollMulti(multi_, timeout_ms);
	}

  private:
	void Detach(Transfer &t) {
		if (!t.easy)
			return;
		curl_multi_remove_handle(multi_, t.easy.get());
		pool_.Release(std::move(t.easy));
	}

	void End(std::size_t index) {
		++ended_;
		if (on_complete_)
			on_complete_(index, responses_[index]);
	}

	CURLM *multi_;
	HandlePool &pool_;
	const TlsOptions &tls_;
	const long connect_timeout_ms_;
	const std::vector<Request> &requests_;
	std::vector<Response> &responses_;
	const std::size_t limit_;
	const CompletionCallback &on_complete_;
	std::vector<std::unique_ptr<Transfer>> active_;
	std::size_t next_ = 0;  // first request not started
	std::size_t ended_ = 0; // requests ended (on_complete called)
};

// One call of Engine::Stream: the requests are pulled from a source and owned
// here until they end.
class StreamRun {
  public:
	StreamRun(CURLM *multi, HandlePool &pool, const TlsOptions &tls, long connect_timeout_ms, std::size_t limit,
	          const CompletionCallback &on_complete)
	    : multi_(multi), pool_(pool), tls_(tls), connect_timeout_ms_(connect_timeout_ms), limit_(limit),
	      on_complete_(on_complete) {}

	~StreamRun() {
		for (auto &a : active_)
			Detach(a->transfer);
	}

	StreamRun(const StreamRun &) = delete;
	StreamRun &operator=(const StreamRun &) = delete;

	bool Full() const {
		return active_.size() >= limit_;
	}
	bool Idle() const {
		return active_.empty();
	}

	void Start(Request request) {
		auto a = std::make_unique<Active>();
		a->request = std::move(request);
		Transfer &t = a->transfer;
		t.index = next_index_++;
		t.request = &a->request;
		t.response = &a->response;
		t.easy = pool_.Acquire();
		t.start = std::chrono::steady_clock::now();
		if (!t.Setup(tls_, connect_timeout_ms_)) {
			pool_.Release(std::move(t.easy));
			End(*a);
			return;
		}
		const CURLMcode mc = curl_multi_add_handle(multi_, t.easy.get());
		if (mc != CURLM_OK) {
			pool_.Release(std::move(t.easy));
			throw Error(ErrorKind::kInternal, sqlstate::kOutOfMemory, "could not start an HTTP transfer",
			            curl_multi_strerror(mc));
		}
		active_.push_back(std::move(a));
	}

	void Interrupt() {
		std::vector<std::unique_ptr<Active>> ending;
		ending.swap(active_);
		for (auto &a : ending) {
			Detach(a->transfer);
			a->transfer.End(TransportStatus::kInterrupted, "transfer interrupted");
		}
		for (auto &a : ending)
			End(*a);
	}

	// As Batch::Pump.
	bool Pump() {
		int running = 0;
		const CURLMcode mc = curl_multi_perform(multi_, &running);
		if (mc != CURLM_OK && mc != CURLM_CALL_MULTI_PERFORM)
			throw Error(ErrorKind::kInternal, sqlstate::kInternalError, "HTTP engine failure", curl_multi_strerror(mc));
		bool freed_a_slot = false;
		int queued = 0;
		while (CURLMsg *msg = curl_multi_info_read(multi_, &queued)) {
			if (msg->msg != CURLMSG_DONE)
				continue;
			auto it = std::find_if(active_.begin(), active_.end(), [&](const std::unique_ptr<Active> &a) {
				return a->transfer.easy.get() == msg->easy_handle;
			});
			if (it == active_.end())
				continue;
			std::unique_ptr<Active> a = std::move(*it);
			active_.erase(it);
			a->transfer.Finish(msg->data.result);
			Detach(a->transfer);
			End(*a);
			freed_a_slot = true;
		}
		return freed_a_slot;
	}

	void Wait(long timeout_ms) {
		PollMulti(multi_, timeout_ms);
	}

  private:
	struct Active {
		Request request;
		Response response;
		Transfer transfer;
	};

	void Detach(Transfer &t) {
		if (!t.easy)
			return;
		curl_multi_remove_handle(multi_, t.easy.get());
		pool_.Release(std::move(t.easy));
	}

	void End(Active &a) {
		if (on_complete_)
			on_complete_(a.transfer.index, a.response);
	}

	CURLM *multi_;
	HandlePool &pool_;
	const TlsOptions &tls_;
	const long connect_timeout_ms_;
	const std::size_t limit_;
	const CompletionCallback &on_complete_;
	std::vector<std::unique_ptr<Active>> active_;
	std::size_t next_index_ = 0;
};

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
	case TransportStatus::kNotSent:
		return "not sent";
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
	long idle_wait_ms = kPollTimeoutMs;
	MultiPtr multi;
	HandlePool pool;
};

Engine::Engine(TlsOptions tls) : impl_(std::make_unique<Impl>()) {
	GlobalInit();
	impl_->tls = std::move(tls);
	impl_->multi.reset(curl_multi_init());
	if (!impl_->multi)
		throw Error(ErrorKind::kInternal, sqlstate::kOutOfMemory, "could not create the HTTP engine");
}

Engine::~Engine() {
	// Easy handles are never left attached to the multi handle (Batch
	// detaches them), so the order does not matter; drop them first anyway.
	impl_->pool.Clear();
	impl_->multi.reset();
}

void Engine::SetTls(const TlsOptions &tls) {
	impl_->tls = tls;
}

void Engine::SetConnectTimeout(long ms) {
	impl_->connect_timeout_ms = ms > 0 ? ms : 1;
}

void Engine::SetIdleWait(long ms) {
	impl_->idle_wait_ms = ms > 0 ? ms : 1;
}

std::vector<Response> Engine::Perform(const std::vector<Request> &requests, int max_concurrency,
                                      const InterruptProbe &probe, const CompletionCallback &on_complete,
                                      const StopStartingProbe &stop_starting) {
	std::vector<Response> responses(requests.size());
	const std::size_t limit = static_cast<std::size_t>(std::max(max_concurrency, 1));
	Batch batch(impl_->multi.get(), impl_->pool, impl_->tls, impl_->connect_timeout_ms, requests, responses, limit,
	            on_complete);
	while (!batch.Done()) {
		if (probe && probe()) {
			batch.Interrupt();
			break;
		}
		if (stop_starting && stop_starting())
			batch.SkipUnstarted();
		else
			batch.Start();
		if (batch.Done())
			break;
		const bool freed_a_slot = batch.Pump();
		if (batch.Done())
			break;
		// Start the next request now rather than after up to the idle wait.
		if (freed_a_slot && batch.HasUnstarted())
			continue;
		batch.Wait(impl_->idle_wait_ms);
	}
	return responses;
}

void Engine::Stream(const RequestSource &next, int max_concurrency, const InterruptProbe &probe,
                    const CompletionCallback &on_complete) {
	const std::size_t limit = static_cast<std::size_t>(std::max(max_concurrency, 1));
	StreamRun run(impl_->multi.get(), impl_->pool, impl_->tls, impl_->connect_timeout_ms, limit, on_complete);
	bool finished = false;
	for (;;) {
		if (probe && probe()) {
			run.Interrupt();
			return;
		}
		bool waiting = false;
		while (!finished && !waiting && !run.Full()) {
			Request request;
			switch (next(&request)) {
			case Pull::kReady:
				run.Start(std::move(request));
				break;
			case Pull::kWaiting:
				waiting = true;
				break;
			case Pull::kFinished:
				finished = true;
				break;
			}
		}
		if (finished && run.Idle())
			return;
		const bool freed_a_slot = run.Pump();
		if (finished && run.Idle())
			return; // not after a wait: nothing would end it but the poll's timeout
		if (freed_a_slot && !finished && !waiting)
			continue;
		// Sockets, a Wake() from the producer, or the probe's interval.
		run.Wait(impl_->idle_wait_ms);
	}
}

void Engine::Wake() {
	curl_multi_wakeup(impl_->multi.get());
}

Response Engine::PerformOne(const Request &request, const InterruptProbe &probe) {
	std::vector<Request> one;
	one.push_back(request); // copies the string_view only, not the body
	std::vector<Response> r = Perform(one, 1, probe);
	return std::move(r.front());
}

} // namespace reportstore::http
