# 05-ses-raw-bytes.py: LocalStack "start" hook that lets its SES keep raw mail byte for byte.
#
# LocalStack 4.14's SendRawEmail decodes the raw message as strict UTF-8 (provider.py:
# `raw_data = to_str(raw_message["Data"])`), so a message with an 8-bit part in another charset
# (windows-1252, ISO-8859-1, ...), or a header with raw non-UTF-8 bytes, fails with a 500
# InternalError, which real SES accepts and SDKs retry. LocalStack runs .py init hooks inside its
# own process (exec), so this hook patches the SES provider module:
#   - the raw bytes are decoded as UTF-8 with surrogateescape, which is lossless; RawData in
#     GET /_aws/ses stays the same text as before for UTF-8 mail, and non-UTF-8 bytes show up as
#     lone surrogates ("\udce9"), which JSON decoders other than Python's replace with U+FFFD;
#   - every raw message in GET /_aws/ses gets "RawDataBase64": the exact bytes sent.
# LocalStack 4.14.0 is the last open release, so the patched names do not move.
import base64
import logging

from localstack.services.ses import provider as _ses_provider


def _to_str_lossless(obj, encoding="utf-8", errors="strict"):
    return obj.decode("utf-8", "surrogateescape") if isinstance(obj, bytes) else obj


_save_for_retrospection = _ses_provider.save_for_retrospection


def _save_with_bytes(sent_email):
    raw = sent_email.get("RawData")
    if isinstance(raw, str):
        sent_email["RawDataBase64"] = base64.b64encode(raw.encode("utf-8", "surrogateescape")).decode("ascii")
    return _save_for_retrospection(sent_email)


_ses_provider.to_str = _to_str_lossless
_ses_provider.save_for_retrospection = _save_with_bytes
logging.getLogger("mailrelay.init").info("SES SendRawEmail patched: raw bytes kept, RawDataBase64 added")
