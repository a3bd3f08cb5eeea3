// See xml_doc.hpp. Each parse uses its own parser context whose error handler
// swallows libxml2's messages, so nothing is printed to stderr.
#include "core/xml_doc.hpp"

#include <libxml/parser.h>
#include <libxml/xmlversion.h>
#include <libxml/xmlerror.h>

#include <cstring>
#include <limits>
#include <mutex>

namespace reportstore::xml {

namespace {

using CtxtPtr = Handle<xmlParserCtxt, xmlFreeParserCtxt>;

// libxml2 2.12 made the error of xmlStructuredErrorFunc const.
#if LIBXML_VERSION >= 21200
extern "C" void IgnoreStructuredError(void *, const xmlError *) {}
#else
extern "C" void IgnoreStructuredError(void *, xmlErrorPtr) {}
#endif

void InitLibxml() {
	static std::once_flag once; // trivially destructible
	std::call_once(once, [] { xmlInitParser(); });
}

} // namespace

DocPtr Parse(std::string_view xml, std::size_t max_bytes, std::string *why) {
	if (xml.empty() || xml.size() > max_bytes ||
	    xml.size() > static_cast<std::size_t>(std::numeric_limits<int>::max())) {
		if (why)
			*why = xml.empty() ? "empty body" : "body of " + std::to_string(xml.size()) + " bytes is too large";
		return nullptr;
	}
	InitLibxml();
	CtxtPtr ctxt(xmlNewParserCtxt());
	if (!ctxt) {
		if (why)
			*why = "out of memory";
		return nullptr;
	}
	if (ctxt->sax) {
		ctxt->sax->serror = &IgnoreStructuredError;
		ctxt->sax->error = nullptr;
		ctxt->sax->warning = nullptr;
	}
	ctxt->vctxt.error = nullptr;
	ctxt->vctxt.warning = nullptr;
	const int options = XML_PARSE_NONET | XML_PARSE_NOBLANKS | XML_PARSE_NOERROR | XML_PARSE_NOWARNING;
	DocPtr doc(xmlCtxtReadMemory(ctxt.get(), xml.data(), static_cast<int>(xml.size()), "s3.xml", nullptr, options));
	if (!doc || !ctxt->wellFormed) {
		if (why) {
			const xmlError *err = xmlCtxtGetLastError(ctxt.get());
			if (err && err->message) {
				std::string m(err->message);
				while (!m.empty() && (m.back() == '\n' || m.back() == ' '))
					m.pop_back();
				*why = "line " + std::to_string(err->line) + ": " + m;
			} else {
				*why = "not well-formed XML";
			}
		}
		return nullptr;
	}
	if (doc->intSubset || doc->extSubset) {
		if (why)
			*why = "document type declarations are not allowed";
		return nullptr;
	}
	return doc;
}

bool IsLocal(const xmlNode *n, const char *name) {
	return n && n->type == XML_ELEMENT_NODE && n->name &&
	       std::strcmp(reinterpret_cast<const char *>(n->name), name) == 0;
}

std::string Text(const xmlNode *n) {
	std::string out;
	for (const xmlNode *c = n->children; c; c = c->next) {
		if ((c->type == XML_TEXT_NODE || c->type == XML_CDATA_SECTION_NODE) && c->content)
			out += reinterpret_cast<const char *>(c->content);
	}
	return out;
}

std::string RootName(const xmlNode *root) {
	return root && root->name ? std::string(reinterpret_cast<const char *>(root->name)).substr(0, 80) : "";
}

} // namespace reportstore::xml
