"""Import and export of streams as JSON: Glimpser's own format and glimpser-rs exports.

Every imported entry is validated by StreamSpec, the schema the stream form uses;
the glimpser-rs reader only renames keys into that schema. All entries are validated first,
then the valid ones are written in one transaction, so an import never leaves half a result.

Rules and notification channels travel beside the streams (Glimpser's format only), so that a
whole set-up moves between installations in one file. Rules are RuleSpec fields with chosen
streams and channels by name instead of id, so that they mean the same on another installation;
on import the names map to the streams and channels of the same file (also when renamed) or to
existing ones. Channels are ChannelSpec fields; their secrets (tokens, passwords, Apprise URLs)
are exported only on explicit request, and an overwrite without them keeps the stored ones.

Modules: export (writing a document), reading (a file's size, JSON and format), glimpser_rs (the
glimpser-rs mapping), importing (validating and writing streams, channels and rules), report
(what an import did), stream_store (the one way a stream row is created or updated). The names
below are the package's API for the CLI and the admin page.
"""

from glimpser.transfer.export import FORMAT, VERSION, dumps_document, export_streams
from glimpser.transfer.importing import MODES, import_streams
from glimpser.transfer.reading import MAX_IMPORT_BYTES, TransferError, detect_format, load_document
from glimpser.transfer.report import OUTCOMES, EntryReport, ImportReport

__all__ = [
    "FORMAT",
    "MAX_IMPORT_BYTES",
    "MODES",
    "OUTCOMES",
    "VERSION",
    "EntryReport",
    "ImportReport",
    "TransferError",
    "detect_format",
    "dumps_document",
    "export_streams",
    "import_streams",
    "load_document",
]
