#!/usr/bin/env python3
"""Decode an uncompressed FDP recording (docs/LAYOUT.md, "Frame-delta stream")
with the standard library only, and print a JSON summary of its records.

Written from the document alone: record/python_test.go compares its summary
with the Go decoder's, so the document is enough to write a decoder.
Compressed (zstd) records are reported, not decoded (no zstd in the
standard library)."""
import json
import struct
import sys

def crc32c_table():
    t = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        t.append(c)
    return t

TAB = crc32c_table()

def crc32c(b):
    c = 0xFFFFFFFF
    for x in b:
        c = TAB[(c ^ x) & 0xFF] ^ (c >> 8)
    return c ^ 0xFFFFFFFF

def u16(b, o): return struct.unpack_from('<H', b, o)[0]
def u32(b, o): return struct.unpack_from('<I', b, o)[0]
def u64(b, o): return struct.unpack_from('<Q', b, o)[0]
def pad8(n): return (n + 7) & ~7
def name(b): return b.split(b'\0', 1)[0].decode()

def header(p):
    assert u32(p, 0) == 2, 'stream version'
    nc, ns = u32(p, 40), u32(p, 44)
    tables = 88 + 56 * (nc + ns)
    nf, ft = u32(p, tables), u32(p, tables + 4)     # the field table (docs/LAYOUT.md "Field table")
    assert len(p) == tables + 8 + ft and ft % 64 == 0
    comps, singles = [], []
    o = 88
    for _ in range(nc):
        comps.append({'name': name(p[o:o+32]), 'size': u32(p, o+32), 'align': u32(p, o+36),
                      'max_len': u32(p, o+48), 'per_entity': u32(p, o+52)})
        o += 56
    for _ in range(ns):
        singles.append({'name': name(p[o:o+32]), 'size': u32(p, o+32)})
        o += 56
    K = u32(p, 32)
    W = max(1, (nc + 63) // 64)
    return {'instance': p[56:56+u32(p, 52)].decode(), 'schema_hash': u64(p, 16), 'frame_period': u64(p, 24),
            'K': K, 'M': u32(p, 36), 'R': 8 + 8 * W, 'components': comps, 'singletons': singles}

def frame(p, h):
    f = {'frame': u64(p, 0), 'version': u64(p, 8), 'base': u64(p, 16), 'chunks': u32(p, 32),
         'entities': u32(p, 36), 'alive': u32(p, 40), 'mask': [u64(p, 48 + 8*j) for j in range(4)]}
    nch, ncol, nsg, nev, nb = (u32(p, 80 + 4*i) for i in range(5))
    o = 104
    f['chunk_entries'] = []
    for _ in range(nch):
        c, rows, alive, sv = u32(p, o), u32(p, o+4), u32(p, o+8), u64(p, o+16)
        o += 24
        recs = p[o:o + rows * h['R']]
        o += rows * h['R']
        alive_seen = sum(1 for r in range(rows) if u32(recs, r * h['R'] + 4) & 1)
        f['chunk_entries'].append([c, rows, alive, sv, alive_seen])
    f['columns'] = []
    for _ in range(ncol):
        c, k, v, n = u32(p, o), u16(p, o+4), u64(p, o+8), u32(p, o+16)
        o += 24
        f['columns'].append([c, k, v, n, crc32c(p[o:o+n])])
        o += pad8(n)
    f['singletons'] = []
    for _ in range(nsg):
        i, n, v = u16(p, o), u32(p, o+4), u64(p, o+8)
        o += 16
        f['singletons'].append([i, v, p[o:o+n].hex()])
        o += pad8(n)
    f['events'] = []
    for _ in range(nev):
        t, n, fr = u16(p, o), u32(p, o+4), u64(p, o+8)
        o += 16
        f['events'].append([t, fr, p[o:o+n].hex()])
        o += pad8(n)
    f['batches'] = []
    for _ in range(nb):
        slot, nl, pid, inc, seq, ap, rj, nc = (u16(p, o), u16(p, o+2), u32(p, o+4), u64(p, o+8), u64(p, o+16),
                                              u32(p, o+24), u32(p, o+28), u32(p, o+32))
        o += 40
        mod = p[o:o+nl].decode()
        o += pad8(nl)
        f['batches'].append([mod, slot, pid, inc, seq, ap, rj, p[o:o+nc].hex()])
        o += pad8(nc)
    assert o == len(p), 'entries end at the payload end'
    return f

def main(path):
    b = open(path, 'rb').read()
    out = {'frames': [], 'index': None, 'trailer': None}
    o = 0
    h = None
    while o < len(b):
        if b[o:o+4] != b'FDPR':
            out['trailer'] = {'index_offset': u64(b, o), 'magic': b[o+8:o+16].decode()}
            o += 16
            continue
        kind, codec, flags = b[o+4], b[o+5], u16(b, o+6)
        stored, raw, fr, pcrc, hcrc = u32(b, o+8), u32(b, o+12), u64(b, o+16), u32(b, o+24), u32(b, o+28)
        assert flags == 0 and hcrc == crc32c(b[o:o+28]), 'head checksum'
        p = b[o+32:o+32+stored]
        assert pcrc == crc32c(p), 'payload checksum'
        if kind == 1:
            h = header(p)
            out['header'] = h
        elif kind in (2, 3):
            if codec != 0:
                out['frames'].append({'frame': fr, 'kind': kind, 'compressed': True})
            else:
                f = frame(p, h)
                assert f['frame'] == fr
                f['kind'] = kind
                f['offset'] = o
                out['frames'].append(f)
        elif kind == 4:
            n = u32(p, 0)
            out['index'] = [[u64(p, 8+32*i), u64(p, 16+32*i), u32(p, 24+32*i), u32(p, 28+32*i), p[32+32*i]] for i in range(n)]
            out['index_offset'] = o
        o += 32 + stored
    print(json.dumps(out))

if __name__ == '__main__':
    main(sys.argv[1])
