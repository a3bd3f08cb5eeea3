// Parsing untrusted XML with libxml2, shared by the S3 and STS parsers: no
// network access, no entity substitution, no DTD (a document with a DOCTYPE
// is refused), bounded input, and no process-wide libxml2 state touched
// (PostgreSQL's own XML functions may use libxml2 in the same process).
#pragma once

#include <libxml/tree.h>

#include <cstddef>
#include <string>
#include <string_view>

#include "core/handle.hpp"

namespace reportstore::xml {

using DocPtr = Handle<xmlDoc, xmlFreeDoc>;

// The document, or null when it is empty, larger than max_bytes, not
// well-formed or has a DTD; *why (if given) then says which. Throws
// std::bad_alloc only.
DocPtr Parse(std::string_view xml, std::size_t max_bytes, std::string *why);

// Element with local name `name`, in any namespace or none.
bool IsLocal(const xmlNode *n, const char *name);

// Concatenated text and CDATA children (entity references are not expanded).
std::string Text(const xmlNode *n);

// The root element's name (at most 80 bytes), for messages.
std::string RootName(const xmlNode *root);

} // namespace reportstore::xml
