#!/usr/bin/env python3
"""Prints the kNewerThanUnicode8 table of src/tokenizer/unicode_util.cpp.

HF tokenizers' BERT normalizer and pre-tokenizer classify characters with the unicode_categories
crate, whose data is Unicode 8.0: punctuation (P*), control/format/private (Cc Cf Co Cs) and
nonspacing marks (Mn) assigned later are plain unassigned characters to it. The table lists those
code points (categories from the system's utf8proc, ages from Perl's Unicode::UCD; characters
utf8proc knows but Perl does not are newer still).
"""
import ctypes
import subprocess

PERL = 'use Unicode::UCD "prop_invmap"; my ($l, $m) = prop_invmap("Age"); printf("%X %s\\n", $l->[$_], $m->[$_]) for 0..$#$l;'


def main():
    utf8proc = ctypes.CDLL("libutf8proc.so.2")
    ages = [(int(cp, 16), age) for cp, age in (line.split() for line in
                                                subprocess.check_output(["perl", "-e", PERL], text=True).splitlines())]

    def newer(cp):
        lo, hi = 0, len(ages) - 1
        while lo < hi:
            mid = (lo + hi + 1) // 2
            lo, hi = (mid, hi) if ages[mid][0] <= cp else (lo, mid - 1)
        return ages[lo][1] == "Unassigned" or float(ages[lo][1]) > 8.0

    # utf8proc categories: 6 Mn, 12..18 P*, 26..29 Cc Cf Cs Co.
    ranges = []
    for cp in range(0x110000):
        c = utf8proc.utf8proc_category(cp)
        if (c == 6 or 12 <= c <= 18 or 26 <= c <= 29) and newer(cp):
            if ranges and ranges[-1][1] == cp - 1:
                ranges[-1][1] = cp
            else:
                ranges.append([cp, cp])
    for i in range(0, len(ranges), 4):
        print("    " + " ".join(f"{{0x{a:X}, 0x{b:X}}}," for a, b in ranges[i:i + 4]))


if __name__ == "__main__":
    main()
