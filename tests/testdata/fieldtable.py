"""Reads the field table of a live world segment from docs/LAYOUT.md alone
(no FDP code) and prints, as JSON, every component's and singleton's fields
with the fingerprint it recomputes and the one the table stores.

usage: fieldtable.py <path of fdp.<instance>.world>
"""
import json, mmap, struct, sys


def fnv1a64(b):
    h = 0xcbf29ce484222325
    for c in b:
        h = ((h ^ c) * 0x100000001b3) & 0xFFFFFFFFFFFFFFFF
    return h


TYPES = {1: 'u8', 2: 'i8', 3: 'u16', 4: 'i16', 5: 'u32', 6: 'i32', 7: 'u64', 8: 'i64', 9: 'f32', 10: 'f64',
         11: 'bool', 12: 'c64', 13: 'c128', 14: 'bytes', 15: 'string'}

with open(sys.argv[1], 'rb') as f:
    m = mmap.mmap(f.fileno(), 0, prot=mmap.PROT_READ)
u32 = lambda o: struct.unpack_from('<I', m, o)[0]
u64 = lambda o: struct.unpack_from('<Q', m, o)[0]
assert m[0:8] == b'FDPSEGMT' and u32(8) == 4 and u32(12) == 1 and u32(60) == 0x59444552
sections = {}
for i in range(u32(56)):
    o = 128 + 24 * i
    sections[u32(o)] = (u32(o + 4), u64(o + 8), u64(o + 16))
C, NS = u32(1028), u32(1076)
name = lambda o: bytes(m[o:o + 32]).split(b'\0')[0].decode()
owners = [('component', k, name(4096 + 64 * k), u32(4096 + 64 * k + 32), u32(4096 + 64 * k + 36),
           u64(4096 + 64 * k + 40)) for k in range(C)]
if NS:
    _, st, _ = sections[8]
    owners += [('singleton', i, name(st + 64 * i), u32(st + 64 * i + 32), u32(st + 64 * i + 36),
                u64(st + 64 * i + 40)) for i in range(NS)]
n, base, size = sections[9]
fields = {}
for i in range(n):
    o = base + 32 * i
    kind, typ, oid = m[o], m[o + 1], struct.unpack_from('<H', m, o + 2)[0]
    off, count, noff, nlen = u32(o + 4), u32(o + 8), u32(o + 12), u32(o + 16)
    assert m[o + 20:o + 32] == bytes(12)
    fname = bytes(m[base + noff:base + noff + nlen]).decode()
    fields.setdefault(({1: 'component', 2: 'singleton'}[kind], oid), []).append((fname, typ, off, count))
out = []
for kind, oid, oname, vsize, valign, fp in owners:
    fl = fields[(kind, oid)]
    d = struct.pack('<III', vsize, valign, len(fl))
    for fname, typ, off, count in fl:
        nb = fname.encode()
        d += struct.pack('<BIII', typ, off, count, len(nb)) + nb
    out.append({'owner': kind, 'name': oname, 'stored': '%#018x' % fp, 'computed': '%#018x' % fnv1a64(d),
                'fields': [{'name': a, 'type': TYPES[b], 'offset': c, 'count': e} for a, b, c, e in fl]})
print(json.dumps(out))
