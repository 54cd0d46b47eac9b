/**
 * A small least-recently-used map with a fixed capacity and no timers (so nothing to clear on
 * close). The channel uses it to remember recent message ids (dedupe) and as the Signal key
 * cache Baileys reads through; both must stay bounded whatever a peer sends.
 */
import type { CacheStore } from '@whiskeysockets/baileys';

export class LruMap<K, V> {
  private readonly entries = new Map<K, V>();

  constructor(readonly capacity: number) {
    if (!Number.isInteger(capacity) || capacity < 1) {
      throw new RangeError(`an LRU needs a capacity of at least 1, got ${capacity}`);
    }
  }

  get size(): number {
    return this.entries.size;
  }

  has(key: K): boolean {
    return this.entries.has(key);
  }

  get(key: K): V | undefined {
    if (!this.entries.has(key)) return undefined;
    const value = this.entries.get(key) as V;
    this.entries.delete(key);
    this.entries.set(key, value);
    return value;
  }

  set(key: K, value: V): void {
    this.entries.delete(key);
    this.entries.set(key, value);
    if (this.entries.size > this.capacity) {
      const oldest = this.entries.keys().next();
      if (!oldest.done) this.entries.delete(oldest.value);
    }
  }

  delete(key: K): boolean {
    return this.entries.delete(key);
  }

  clear(): void {
    this.entries.clear();
  }
}

/** Baileys' `CacheStore` over an {@link LruMap}: for `makeCacheableSignalKeyStore`. */
export function lruCacheStore(capacity: number): CacheStore & { readonly size: number } {
  const map = new LruMap<string, unknown>(capacity);
  return {
    get size() {
      return map.size;
    },
    get<T>(key: string): T | undefined {
      return map.get(key) as T | undefined;
    },
    set<T>(key: string, value: T): void {
      map.set(key, value);
    },
    del(key: string): void {
      map.delete(key);
    },
    flushAll(): void {
      map.clear();
    },
  };
}
