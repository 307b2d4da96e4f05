// ratings: each reviewer's star rating of the book, served at GET /ratings/<id>; reviews v2 and v3 call it.

import { serve } from './common.mjs';

const RATINGS = Object.freeze({ Reviewer1: 5, Reviewer2: 4 });

serve('ratings', [[/^\/ratings\/(\d+)$/, (match) => ({ id: Number(match[1]), ratings: RATINGS })]]);
