import { defineClusterTests } from './cluster-suite.js';
import { memoryStoreFactory } from './network.js';

defineClusterTests('MemoryStorage', memoryStoreFactory);
