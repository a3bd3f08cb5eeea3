// Uploads a stream of bodies on a thread of its own, so that the caller (a
// PostgreSQL process serializing the next reports) and the transfers, the
// hashing and the compression run at the same time, on two cores.
//
// The thread never calls PostgreSQL, touches no PostgreSQL memory but the
// bodies it is given (read only), and lets no exception escape: every
// failure ends in the outcome of its upload. Bodies up to a window of bytes
// are queued or in flight at once; Submit() waits while the window is full,
// so the caller's memory stays bounded by the window, not by the batch.
//
// When an upload ends without an answer from the server (timeout, refused or
// lost connection), no new upload starts: the ones not sent yet end as "not
// sent" with Error::no_answer() set, so a silent endpoint costs one timeout,
// not one per report.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <mutex>
#include <thread>
#include <utility>
#include <vector>

#include "core/compression.hpp"
#include "core/s3/client.hpp"

namespace reportstore::s3 {

class UploadPipeline {
  public:
	struct Options {
		int max_concurrency = 16;
		std::uint64_t window_bytes = 64u << 20;               // bodies queued or in flight at once (one always fits)
		compression::Codec codec = compression::Codec::kNone; // applied on the thread
	};
	using Finished = std::vector<std::pair<std::size_t, PutOutcome>>; // (tag, outcome)
	using Interrupted = std::function<bool()>;                        // the caller wants to stop

	// Starts the thread. The client and its engine are the thread's until
	// the pipeline is destroyed: nobody else may use them meanwhile.
	UploadPipeline(const Client &client, Options options);
	~UploadPipeline(); // stops the transfers and joins the thread
	UploadPipeline(const UploadPipeline &) = delete;
	UploadPipeline &operator=(const UploadPipeline &) = delete;

	// Queues one upload. request.body (and any string it points into) must
	// stay valid until its outcome has been returned by Take() or Finish().
	// Waits while the window is full; returns false, queueing nothing, when
	// `interrupted` (polled every 50 ms) fired meanwhile.
	bool Submit(std::size_t tag, PutRequest request, const Interrupted &interrupted);

	// The outcomes that ended since the last call; does not wait.
	Finished Take();

	// No more uploads: waits until every queued one has ended (polling
	// `interrupted`; when it fires the transfers are aborted and end as
	// interrupted), then returns the outcomes not taken yet.
	Finished Finish(const Interrupted &interrupted);

	// Aborts the transfers in flight; the thread then ends every upload.
	// Safe from any thread.
	void Stop();

  private:
	struct Item {
		std::size_t tag = 0;
		PutRequest request;
		std::string compressed; // the body after compression, when there is one
		crypto::PayloadDigests digests;
		std::optional<http::Response> answer; // kept when the stored object must be read
		std::uint64_t bytes = 0;              // window bytes it holds
	};
	using ItemPtr = std::unique_ptr<Item>; // stable address: requests point into it

	void Run() noexcept;
	http::Pull Next(http::Request *out);
	void Complete(std::size_t index, http::Response &response);
	void RunLater(Item &item);
	void End(const Item &item, PutOutcome outcome);
	PutOutcome Failed(const Item &item, const char *why, bool no_answer) const;
	// Inside a catch block only: the outcome of the exception being handled
	// (an Error as it is, an unanswered one noted; anything else internal).
	PutOutcome Threw(const Item &item);

	const Client &client_;
	const Options options_;

	std::mutex mu_;
	std::condition_variable changed_;        // an upload ended, or the thread finished
	std::deque<ItemPtr> queued_;             // submitted, not started (guarded by mu_)
	std::map<std::size_t, ItemPtr> started_; // by the engine's index (thread only)
	std::size_t next_index_ = 0;             // the engine's index of the next request pulled
	std::vector<ItemPtr> later_;             // multipart bodies and HEAD checks, after the stream
	Finished finished_;                      // guarded by mu_
	std::uint64_t window_used_ = 0;          // guarded by mu_
	bool closed_ = false;                    // guarded by mu_: Finish() was called
	bool done_ = false;                      // guarded by mu_: the thread has ended everything
	std::atomic<bool> stop_{false};
	std::atomic<bool> unanswered_{false}; // an upload got no answer: start no more
	std::atomic<bool> idle_{false};       // the thread found nothing queued: Submit() wakes it
	std::thread thread_;
};

} // namespace reportstore::s3
