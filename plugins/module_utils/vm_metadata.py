# Copyright: entropy.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What entropy.cluster keeps with a VM: libvirt domain metadata in the collection's own XML namespace.

One element per domain, ``<entropy:vm xmlns:entropy="urn:x-entropy-cluster:vm:1">``, holding

* ``<priority>N</priority>``: the VM's priority (an integer, higher runs first; none = 0), set by
  entropy.cluster.vm_priority, read by the inventory as ``entropy_priority``;
* ``<saved path="..."/>``: set on the definition a VM keeps on the host that saved it to shared storage
  (entropy.cluster.vm_image state=saved), so that entropy.cluster.vm_state refuses to boot it there (the memory
  state would be lost and the image could later start a second copy);
* ``<job>NAME</job>`` and ``<owner>USER</owner>``: the job (docs/jobs.md) a VM belongs to and who submitted it,
  written when entropy.cluster.job_vm defines the VM, read by the inventory (``entropy_job``, ``entropy_owner``) and
  entropy.cluster.job_status. Tenant data, kept as XML text (escaped by ElementTree, never templated).

No Ansible import and no libvirt import at module level: the inventory plugin, the modules and the unit tests share it.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET

NAMESPACE = "urn:x-entropy-cluster:vm:1"
PREFIX = "entropy"
_TAG = "{%s}vm" % NAMESPACE
ET.register_namespace(PREFIX, NAMESPACE)  # a rewritten domain XML keeps the usual prefix


class MetadataError(ValueError):
    """Metadata that is there but cannot be read (a priority that is no integer): the message names the fix."""


def parse_priority(value, vm: str) -> int:
    """``value`` as a priority (an int, or a string of one); MetadataError naming the VM and the fix otherwise."""
    if isinstance(value, bool):
        value = None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().lstrip("+-").isdigit():
        return int(value.strip())
    raise MetadataError("VM %r: priority %r is not an integer; give a whole number such as 0 or 10 (higher runs first) "
                        "with entropy.cluster.vm_priority" % (vm, value))


def element_from_domain_xml(domain_xml: str):
    """The ``entropy:vm`` metadata element of a domain XML document, or None."""
    root = ET.fromstring(domain_xml)
    metadata = root.find("metadata")
    return None if metadata is None else metadata.find(_TAG)


def read(domain_xml: str, vm: str, strict: bool = True) -> dict:
    """{"priority": int or None, "saved": path or None, "job": str or None, "owner": str or None} from a domain XML document (a definition, or the XML of a
    saved image). MetadataError when the priority is there but no integer (its text instead when not ``strict``)."""
    element = element_from_domain_xml(domain_xml)
    if element is None:
        return {"priority": None, "saved": None, "job": None, "owner": None}
    text = element.findtext("{%s}priority" % NAMESPACE)
    if text is None:
        text = element.findtext("priority")
    saved = element.find("{%s}saved" % NAMESPACE)
    if saved is None:
        saved = element.find("saved")
    if text is not None:
        try:
            text = parse_priority(text, vm)
        except MetadataError:
            if strict:
                raise
    return {"priority": text, "saved": None if saved is None else saved.get("path"), "job": _text(element, "job"),
            "owner": _text(element, "owner")}


def _text(element, tag: str):
    found = element.find("{%s}%s" % (NAMESPACE, tag))
    if found is None:
        found = element.find(tag)
    return None if found is None else (found.text or "")


def render(values: dict) -> str | None:
    """The element for virDomainSetMetadata (children without a prefix: libvirt puts them in the namespace), or
    None when nothing is left to keep (the element is then removed)."""
    element = ET.Element("vm")
    if values.get("priority") is not None:
        ET.SubElement(element, "priority").text = str(int(values["priority"]))
    if values.get("saved"):
        ET.SubElement(element, "saved", {"path": values["saved"]})
    for tag in ("job", "owner"):
        if values.get(tag) is not None:
            ET.SubElement(element, tag).text = values[tag]
    if not len(element):
        return None
    return ET.tostring(element, encoding="unicode")


def read_domain(dom, libvirt, inactive: bool = False, strict: bool = True) -> dict:
    """The metadata of a libvirt domain (its persistent definition with ``inactive``)."""
    flags = libvirt.VIR_DOMAIN_XML_INACTIVE if inactive else 0
    return read(dom.XMLDesc(flags), dom.name(), strict)


def write_domain(dom, libvirt, values: dict, live: bool, config: bool) -> None:
    """Set (or remove, when empty) the element on the running domain (``live``) and/or its definition (``config``)."""
    flags = (libvirt.VIR_DOMAIN_AFFECT_LIVE if live else 0) | (libvirt.VIR_DOMAIN_AFFECT_CONFIG if config else 0)
    dom.setMetadata(libvirt.VIR_DOMAIN_METADATA_ELEMENT, render(values), PREFIX, NAMESPACE, flags)


def without_saved_mark(domain_xml: str) -> str:
    """``domain_xml`` without the ``saved`` mark (the definition a restore moves to its new host)."""
    root = ET.fromstring(domain_xml)
    metadata = root.find("metadata")
    element = None if metadata is None else metadata.find(_TAG)
    if element is None:
        return domain_xml
    for tag in ("{%s}saved" % NAMESPACE, "saved"):
        for child in element.findall(tag):
            element.remove(child)
    if not len(element):
        metadata.remove(element)
        if not len(metadata):
            root.remove(metadata)
    return ET.tostring(root, encoding="unicode")
