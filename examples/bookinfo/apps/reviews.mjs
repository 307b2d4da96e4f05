// reviews: the book's reviews at GET /reviews/<id>, in three versions as in bookinfo: v1 without
// ratings, v2 with ratings as black stars, v3 as red stars (both v2 and v3 call ratings).

import { getJson, identity, serve, upstreamUrl } from './common.mjs';

// The version alone picks the behaviour: the three reviews pods run this one file and differ only in VERSION.
const STAR_COLOR = Object.freeze({ v1: null, v2: 'black', v3: 'red' });
const REVIEWS = Object.freeze([
  { reviewer: 'Reviewer1', text: 'An extremely entertaining play by Shakespeare. The slapstick humour is refreshing!' },
  { reviewer: 'Reviewer2', text: 'Absolutely fun and entertaining. The play lacks thematic depth when compared to other plays by Shakespeare.' },
]);

const { version } = identity('reviews');
if (!Object.hasOwn(STAR_COLOR, version)) throw new Error(`VERSION=${version}: reviews comes in ${Object.keys(STAR_COLOR).join(', ')}`);
const color = STAR_COLOR[version];
const ratingsUrl = upstreamUrl('RATINGS_URL', 'http://ratings:9080');

async function reviews(match, trace) {
  const id = Number(match[1]);
  if (!color) return { id, reviews: REVIEWS };
  const ratings = await getJson('ratings', ratingsUrl, `/ratings/${id}`, trace);
  return {
    id,
    reviews: REVIEWS.map((r) => ({ ...r, rating: { stars: ratings.ratings?.[r.reviewer] ?? null, color } })),
    // The whole answer, so a caller sees which ratings pod served it.
    ratings,
  };
}

serve('reviews', [[/^\/reviews\/(\d+)$/, reviews]]);
