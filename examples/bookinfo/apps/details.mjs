// details: the book's publication facts, served at GET /details/<id>; it calls no other service.

import { serve } from './common.mjs';

const BOOK = Object.freeze({
  author: 'William Shakespeare',
  year: 1595,
  type: 'paperback',
  pages: 200,
  publisher: 'PublisherA',
  language: 'English',
  'ISBN-10': '1234567890',
  'ISBN-13': '123-1234567890',
});

serve('details', [[/^\/details\/(\d+)$/, (match) => ({ id: Number(match[1]), book: BOOK })]]);
