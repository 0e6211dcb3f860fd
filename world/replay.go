package world

// RestoreChunks is RestoreFinish for a world restored frame after frame (a
// replay): the world was whole before (a RestoreFinish or RestoreChunks
// ran), and since then SetChunkData replaced the records of exactly the
// chunks listed (RestoreColumn and RestoreSingleton may have changed any
// other bytes, which derive nothing). It rebuilds the derived state of the
// listed chunks only (alive and per-component counts, columns alive
// entities need) and the world's count and high-water mark, in time
// proportional to the listed chunks, where RestoreFinish visits every row
// of the world. Later writes stamp strictly newer versions than version.
//
// The free queue and the entity owners are not rebuilt: a replay never
// creates an entity (its command playback is a dry run). Call RestoreFinish
// before a Create on such a world.
func (w *World) RestoreChunks(chunks []int, version uint64) {
	top := -1 // the highest listed chunk
	for _, c := range chunks {
		if c < 0 || c >= len(w.chunks) {
			continue
		}
		top = max(top, c)
		ch := w.chunks[c]
		w.count -= ch.alive
		ch.alive = 0
		clear(ch.counts)
		for i := 0; i < w.capacity; i++ {
			r := w.rec(ch, i)
			if !recAlive(r) {
				continue
			}
			w.tally(ch, r)
		}
		w.count += ch.alive
	}
	// The high-water mark: from the top of the chunks whose records may
	// have moved it, down to the first issued index.
	if top >= 0 && (top+1)*w.capacity >= w.highWater {
		hw := 0
		for c := len(w.chunks) - 1; c >= 0 && hw == 0; c-- {
			if c*w.capacity >= max(w.highWater, (top+1)*w.capacity) {
				continue
			}
			ch := w.chunks[c]
			for i := w.capacity - 1; i >= 0; i-- {
				if recGen(w.rec(ch, i)) != 0 {
					hw = c*w.capacity + i + 1
					break
				}
			}
		}
		w.highWater = hw
	}
	w.version = max(w.version, version+1)
	w.ClearEvents()
}
