/**
 * Bytes queued toward the guest from SND.UNA onward (in flight + unsent), as the chunks the
 * application handed over (no copy on the way in). Reading for a segment starts from a cursor
 * remembered from the previous read, so sending a deep buffer costs O(1) per segment, not a walk
 * from SND.UNA.
 */
export class SendBuffer {
  private readonly chunks: Buffer[] = [];
  /** Index in `chunks` of the first live chunk (consumed ones are dropped in batches). */
  private head = 0;
  /** Bytes of chunks[head] already acknowledged. */
  private headOffset = 0;
  /** Bytes from SND.UNA onward. */
  length = 0;
  // Read cursor: chunk index and the offset from SND.UNA at which that chunk starts.
  private cursorIndex = 0;
  private cursorStart = 0;

  push(data: Buffer): void {
    this.chunks.push(data);
    this.length += data.length;
  }

  /** Drops `n` acknowledged bytes from the front. */
  consume(n: number): void {
    n = Math.min(n, this.length);
    this.length -= n;
    this.cursorStart -= n;
    while (n > 0) {
      const chunk = this.chunks[this.head]!;
      const avail = chunk.length - this.headOffset;
      if (n >= avail) {
        n -= avail;
        this.head++;
        this.headOffset = 0;
      } else {
        this.headOffset += n;
        n = 0;
      }
    }
    if (this.cursorIndex <= this.head) {
      this.cursorIndex = this.head;
      this.cursorStart = 0;
    }
    if (this.head >= 64 && this.head * 2 >= this.chunks.length) {
      this.chunks.splice(0, this.head);
      this.cursorIndex -= this.head;
      this.head = 0;
    }
  }

  /** Copies `length` bytes starting `offset` bytes after SND.UNA into `dst`. */
  copy(offset: number, length: number, dst: Uint8Array, dstOffset: number): void {
    if (offset < this.cursorStart || this.cursorIndex < this.head) {
      this.cursorIndex = this.head;
      this.cursorStart = 0;
    }
    let i = this.cursorIndex;
    let start = this.cursorStart;
    // Advance to the chunk holding `offset`.
    for (;;) {
      const chunk = this.chunks[i];
      if (!chunk) throw new Error("send buffer underrun");
      const size = chunk.length - (i === this.head ? this.headOffset : 0);
      if (offset < start + size) break;
      start += size;
      i++;
    }
    this.cursorIndex = i;
    this.cursorStart = start;
    let skip = offset - start + (i === this.head ? this.headOffset : 0);
    while (length > 0) {
      const chunk = this.chunks[i++];
      if (!chunk) throw new Error("send buffer underrun");
      const n = Math.min(chunk.length - skip, length);
      dst.set(n === chunk.length ? chunk : chunk.subarray(skip, skip + n), dstOffset);
      dstOffset += n;
      length -= n;
      skip = 0;
    }
  }

  clear(): void {
    this.chunks.length = 0;
    this.head = 0;
    this.headOffset = 0;
    this.length = 0;
    this.cursorIndex = 0;
    this.cursorStart = 0;
  }
}
