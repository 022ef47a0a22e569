import { MemoryStorage } from '../lib/memory-storage.js';
import { storageConformance } from './conformance.js';

storageConformance('MemoryStorage', { open: async () => new MemoryStorage(), modelRuns: 200 });
