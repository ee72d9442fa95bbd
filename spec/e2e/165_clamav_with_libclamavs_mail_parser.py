"""Spec 160 again, with clamav.mail_parser = "libclamav".

By default postern's own MIME walk takes a message apart and libclamav
scans each decoded part; with mail_parser = "libclamav" the spool file goes
to libclamav whole and its mail parser does the decoding. Every point of
spec 160 (viruses plain, base64, in a zip, in a zip in a zip, in a
forwarded message and behind a boundary that never closes; banned files
and the file list; incomplete scans and their defaults; the signature
database) must hold the same in this mode: this file runs that spec,
unchanged, with SPEC_CLAMAV_MAIL_PARSER=libclamav.
"""
import os
import runpy

os.environ["SPEC_CLAMAV_MAIL_PARSER"] = "libclamav"
runpy.run_path(os.path.join(os.path.dirname(os.path.abspath(__file__)),
                            "160_clamav_viruses_and_banned_files.py"), run_name="__main__")
