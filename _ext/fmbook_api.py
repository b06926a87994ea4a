"""A Sphinx extension of the book for its API reference (chapters/appendix/api, scripts/api_pages.py).

Two things. First, napoleon reads the Google sections (Args:, Returns:) of the functions, classes
and modules, but leaves the docstrings of attributes, properties and module constants as written:
their first line is a sentence ("The network to sample with: the EMA weights ..."), which
napoleon's attribute parsing would otherwise take for "type: description".

Second, a chapter's mention of a name of fmbook links to its API entry.

The chapters name the package's functions in inline code, `fmbook.paths.AffinePath` or
`fmbook.train.fit()`. After the references are resolved, every inline literal of the text whose
content (less a trailing ``()``) is the full name of an object or a module that the API reference
documents becomes a link to that entry. Code cells and literal blocks are left alone, and so is a
literal that is already inside a link or that names nothing documented (a name of the package
that does not exist stays plain text).
"""

from __future__ import annotations

import re

from docutils import nodes
from sphinx import addnodes
from sphinx.ext import napoleon
from sphinx.transforms.post_transforms import SphinxPostTransform

NAME = re.compile(r"^fmbook(\.[A-Za-z_][A-Za-z0-9_]*)+$")


def target(text: str, objects: dict, modules: dict):
    """The (docname, anchor) of the documented object that ``text`` names, or None."""
    name = text.strip()
    if name.endswith("()"):
        name = name[:-2]
    if not NAME.match(name):
        return None
    if name in objects:
        return objects[name].docname, objects[name].node_id
    if name in modules:
        return modules[name].docname, modules[name].node_id
    return None


class LinkPackageNames(SphinxPostTransform):
    default_priority = 20  # after the cross-references are resolved (priority 10)
    formats = ("html",)

    def run(self, **kwargs) -> None:
        domain = self.env.get_domain("py")
        builder = self.app.builder
        for node in list(self.document.findall(nodes.literal)):
            if isinstance(node.parent, (nodes.reference, nodes.literal_block)):
                continue
            if any(isinstance(a, (nodes.literal_block, nodes.reference, addnodes.desc_signature))
                   for a in _ancestors(node)):
                continue
            found = target(node.astext(), domain.objects, domain.modules)
            if found is None:
                continue
            docname, anchor = found
            uri = builder.get_relative_uri(self.env.docname, docname) + "#" + anchor
            ref = nodes.reference("", "", internal=True, refuri=uri, classes=["fmbook-api-link"])
            node.replace_self(ref)
            ref.append(node)


def _ancestors(node):
    parent = node.parent
    while parent is not None:
        yield parent
        parent = parent.parent


ATTRIBUTE_KINDS = ("attribute", "data", "property")


def google_sections(app, what, name, obj, options, lines) -> None:
    """Napoleon's reading of a docstring, for everything but attributes, properties and constants."""
    if what not in ATTRIBUTE_KINDS:
        napoleon._process_docstring(app, what, name, obj, options, lines)


def setup(app):
    app.setup_extension("sphinx.ext.napoleon")
    listeners = app.events.listeners["autodoc-process-docstring"]
    listeners[:] = [entry for entry in listeners if entry.handler is not napoleon._process_docstring]
    app.connect("autodoc-process-docstring", google_sections)
    app.add_post_transform(LinkPackageNames)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
