// productpage: the bookinfo front end at GET /productpage (and /), combining details and reviews into
// one JSON page that shows which pod of every service answered.

import { allUpstreams, getJson, serve, upstreamUrl } from './common.mjs';

const PRODUCT = Object.freeze({
  id: 0,
  title: 'The Comedy of Errors',
  description: 'Wikipedia Summary: The Comedy of Errors is one of William Shakespeare\'s early plays. It is his shortest and one of his most farcical comedies.',
});
const detailsUrl = upstreamUrl('DETAILS_URL', 'http://details:9080');
const reviewsUrl = upstreamUrl('REVIEWS_URL', 'http://reviews:9080');

async function page(_match, trace) {
  // Both calls at once: the page waits for its slowest upstream, not for the sum of them.
  const [details, reviews] = await allUpstreams([
    getJson('details', detailsUrl, `/details/${PRODUCT.id}`, trace),
    getJson('reviews', reviewsUrl, `/reviews/${PRODUCT.id}`, trace),
  ]);
  return { product: PRODUCT, details, reviews };
}

serve('productpage', [[/^\/(productpage)?$/, page]]);
