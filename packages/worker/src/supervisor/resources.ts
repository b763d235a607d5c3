/**
 * The one cleanup owner of a run: each phase registers what it acquired as it acquires it, and releaseAll()
 * undoes what ran, in reverse order, once, whatever failed (a failing release is logged, the rest still run).
 */
export class ResourceOwner {
  private readonly releases: Array<{ what: string; release: () => Promise<unknown> | unknown }> = [];
  private released: Promise<void> | undefined;

  constructor(private readonly log: (line: string) => void) {}

  add(what: string, release: () => Promise<unknown> | unknown): void {
    this.releases.push({ what, release });
  }

  /** Every caller waits for the one release (a fatal error's teardown may race the run's own `finally`). */
  releaseAll(): Promise<void> {
    this.released ??= this.releaseInOrder();
    return this.released;
  }

  private async releaseInOrder(): Promise<void> {
    for (const { what, release } of this.releases.reverse()) {
      try {
        await release();
      } catch (error) {
        this.log(`cleanup of ${what} failed: ${(error as Error).message}`);
      }
    }
  }
}
