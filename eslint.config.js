// Flat config: recommended JS + typescript-eslint rules over the whole tree.
import js from '@eslint/js';
import tseslint from 'typescript-eslint';
import layering from './eslint/layering.js';

export default tseslint.config(
  { ignores: ['dist/**', '.fuzz-build/**', 'node_modules/**', 'native/build/**'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    languageOptions: { globals: { console: 'readonly', process: 'readonly' } },
    rules: {
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      'no-constant-condition': ['error', { checkLoops: false }],
    },
  },
  {
    // The house: which src/ folder may import which (eslint/layering.js, docs/ARCHITECTURE.md).
    files: ['src/**/*.ts'],
    plugins: { tether: layering },
    rules: { 'tether/layering': 'error' },
  },
);
