// std::unique_ptr for handles of C libraries, freed by the library's own
// function: Handle<CURL, curl_easy_cleanup>.
#pragma once

#include <memory>

namespace reportstore {

template <auto Free> struct FreeWith {
	template <typename T> void operator()(T *p) const {
		Free(p);
	}
};

template <typename T, auto Free> using Handle = std::unique_ptr<T, FreeWith<Free>>;

} // namespace reportstore
