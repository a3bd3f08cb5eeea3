// See upload_pipeline.hpp.
#include "core/s3/upload_pipeline.hpp"

#include <chrono>

#include "core/interrupt.hpp"
#include "core/s3/errors.hpp"

namespace reportstore::s3 {

namespace {

constexpr auto kPollInterval = std::chrono::milliseconds(50);

} // namespace

UploadPipeline::UploadPipeline(const Client &client, Options options)
    : client_(client), options_(options), thread_([this] { Run(); }) {}

UploadPipeline::~UploadPipeline() {
	Stop();
	{
		std::lock_guard<std::mutex> lock(mu_);
		closed_ = true;
	}
	client_.engine().Wake();
	if (thread_.joinable())
		thread_.join();
}

void UploadPipeline::Stop() {
	stop_.store(true);
	client_.engine().Wake();
}

PutOutcome UploadPipeline::Failed(const Item &item, const char *why, bool no_answer) const {
	PutOutcome outcome;
	Error e(no_answer ? ErrorKind::kTransient : ErrorKind::kInterrupted,
	        no_answer ? sqlstate::kIoError : sqlstate::kQueryCanceled,
	        "could not upload object \"" + ObjectName(item.request.bucket, item.request.key) + "\"", why);
	if (no_answer)
		e.MarkNoAnswer();
	outcome.error = std::move(e);
	outcome.not_sent = true;
	return outcome;
}

PutOutcome UploadPipeline::Threw(const Item &item) {
	PutOutcome outcome;
	try {
		throw;
	} catch (const Error &e) {
		if (e.no_answer())
			unanswered_.store(true);
		outcome.error = e;
	} catch (const std::exception &e) {
		outcome.error =
		    Error(ErrorKind::kInternal, sqlstate::kInternalError,
		          "could not upload object \"" + ObjectName(item.request.bucket, item.request.key) + "\"", e.what());
	}
	return outcome;
}

void UploadPipeline::End(const Item &item, PutOutcome outcome) {
	std::lock_guard<std::mutex> lock(mu_);
	window_used_ -= item.bytes;
	finished_.emplace_back(item.tag, std::move(outcome));
	changed_.notify_all();
}

bool UploadPipeline::Submit(std::size_t tag, PutRequest request, const Interrupted &interrupted) {
	auto item = std::make_unique<Item>();
	item->tag = tag;
	item->bytes = request.body.size();
	item->request = std::move(request);
	std::unique_lock<std::mutex> lock(mu_);
	while (window_used_ > 0 && window_used_ + item->bytes > options_.window_bytes && !done_) {
		if (interrupted && interrupted())
			return false;
		changed_.wait_for(lock, kPollInterval);
	}
	if (done_ || unanswered_.load() || stop_.load()) {
		// Nothing more is sent: it ends at once, like the others not sent.
		window_used_ += item->bytes;
		lock.unlock();
		End(*item, Failed(*item,
		                  stop_.load() ? "The transfer was interrupted."
		                               : "Not sent: the S3 server did not answer the uploads before it.",
		                  !stop_.load()));
		return true;
	}
	window_used_ += item->bytes;
	queued_.push_back(std::move(item));
	lock.unlock();
	// A wake-up is a system call and a context switch: only when the thread
	// found the queue empty (it set idle_ under mu_, so it cannot miss this).
	if (idle_.exchange(false))
		client_.engine().Wake();
	return true;
}

UploadPipeline::Finished UploadPipeline::Take() {
	std::lock_guard<std::mutex> lock(mu_);
	Finished out;
	out.swap(finished_);
	return out;
}

UploadPipeline::Finished UploadPipeline::Finish(const Interrupted &interrupted) {
	{
		std::lock_guard<std::mutex> lock(mu_);
		closed_ = true;
	}
	client_.engine().Wake();
	{
		std::unique_lock<std::mutex> lock(mu_);
		while (!done_) {
			if (interrupted && interrupted())
				Stop();
			changed_.wait_for(lock, kPollInterval);
		}
	}
	if (thread_.joinable())
		thread_.join();
	return Take();
}

http::Pull UploadPipeline::Next(http::Request *out) {
	for (;;) {
		ItemPtr item;
		{
			std::lock_guard<std::mutex> lock(mu_);
			if (stop_.load() || unanswered_.load())
				return http::Pull::kFinished; // the rest ends after the stream
			if (queued_.empty()) {
				if (closed_)
					return http::Pull::kFinished;
				idle_.store(true);
				return http::Pull::kWaiting;
			}
			item = std::move(queued_.front());
			queued_.pop_front();
		}
		try {
			if (options_.codec != compression::Codec::kNone) {
				item->compressed = compression::Compress(options_.codec, item->request.body);
				item->request.body = item->compressed;
				item->request.content_encoding = compression::ContentEncoding(options_.codec);
			}
			if (item->request.body.size() > client_.config().multipart_threshold) {
				later_.push_back(std::move(item)); // its parts need the engine to itself
				continue;
			}
			Client::PreparedPut prepared = client_.PreparePut(item->request);
			item->digests = prepared.digests;
			*out = std::move(prepared.request);
			started_.emplace(next_index_++, std::move(item));
			return http::Pull::kReady;
		} catch (const std::exception &) {
			End(*item, Threw(*item));
		}
	}
}

void UploadPipeline::Complete(std::size_t index, http::Response &response) {
	auto it = started_.find(index);
	if (it == started_.end())
		return;
	ItemPtr item = std::move(it->second);
	started_.erase(it);
	PutOutcome outcome;
	try {
		std::optional<PutResult> result = client_.CheckPutAnswer(item->request, item->digests, response, nullptr);
		if (!result) {
			item->answer = std::move(response);
			later_.push_back(std::move(item)); // a HEAD, once the engine is free
			return;
		}
		outcome.result = std::move(*result);
	} catch (const std::exception &) {
		outcome = Threw(*item);
	}
	End(*item, std::move(outcome));
}

void UploadPipeline::RunLater(Item &item) {
	const http::InterruptProbe probe = [this] { return stop_.load(); };
	PutOutcome outcome;
	try {
		if (item.answer) {
			std::optional<PutResult> result = client_.CheckPutAnswer(item.request, item.digests, *item.answer, &probe);
			outcome.result = std::move(*result);
		} else {
			outcome.result = client_.Put(item.request, probe);
		}
	} catch (const std::exception &) {
		outcome = Threw(item);
	}
	End(item, std::move(outcome));
}

void UploadPipeline::Run() noexcept {
	// Hashing and compression on this thread stop with the pipeline.
	core::ScopedInterruptProbe probe([](void *stop) { return static_cast<std::atomic<bool> *>(stop)->load(); }, &stop_);
	try {
		client_.engine().Stream([this](http::Request *out) { return Next(out); }, options_.max_concurrency,
		                        [this] { return stop_.load(); },
		                        [this](std::size_t index, http::Response &response) { Complete(index, response); });
	} catch (...) {
		// Resource exhaustion in the engine: what was started ends below.
		stop_.store(true);
	}
	for (auto &entry : started_)
		End(*entry.second, Failed(*entry.second, "The transfer was interrupted.", false));
	started_.clear();
	for (ItemPtr &item : later_) {
		if (stop_.load() || (unanswered_.load() && !item->answer))
			End(*item, Failed(*item,
			                  stop_.load() ? "The transfer was interrupted."
			                               : "Not sent: the S3 server did not answer the uploads before it.",
			                  !stop_.load()));
		else
			RunLater(*item);
	}
	later_.clear();
	// Whatever is still queued (stopped, or nothing answers), and what comes
	// until the caller calls Finish(), ends without being sent.
	std::unique_lock<std::mutex> lock(mu_);
	for (;;) {
		while (!queued_.empty()) {
			ItemPtr item = std::move(queued_.front());
			queued_.pop_front();
			lock.unlock();
			End(*item, Failed(*item,
			                  stop_.load() ? "The transfer was interrupted."
			                               : "Not sent: the S3 server did not answer the uploads before it.",
			                  !stop_.load()));
			lock.lock();
		}
		if (closed_)
			break;
		changed_.wait_for(lock, kPollInterval);
	}
	done_ = true;
	changed_.notify_all();
}

} // namespace reportstore::s3
