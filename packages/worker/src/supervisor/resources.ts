/**
 * The one cleanup owner of a run: each phase registers what it acquired as it acquires it, and releaseAll()
 * undoes what ran, in reverse order, once, whatever failed (a failing release is logged, the rest still run).
 */
export class ResourceOwner {
  private readonly releases: Array<{ what: string; release: () => Promise<unknown> | unknown }> = [];
  private released = false;

  constructor(private readonly log: (line: string) => void) {}

  add(what: string, release: () => Promise<unknown> | unknown): void {
    this.releases.push({ what, release });
  }

  async releaseAll(): Promise<void> {
    if (this.released) return;
    this.released = true;
    for (const { what, release } of this.releases.reverse()) {
      try {
        await release();
      } catch (error) {
        this.log(`cleanup of ${what} failed: ${(error as Error).message}`);
      }
    }
  }
}
