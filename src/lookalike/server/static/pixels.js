// Image → model input in the browser, pixel for pixel as lookalike does it in Python.
//
// lookalike.imaging.preprocess.Preprocess: decode, composite transparency on white, convert
// to RGB or 8-bit grayscale (Pillow's ITU-R 601 luma), resize ("squash" the whole image, or
// "center_crop"), then (p / 255 − mean) / std as float32, CHW. The resize is a port of
// Pillow's 8-bit resampler (libImaging/Resample.c: the same filter support, fixed-point
// coefficients and rounding, and Pillow 13's choice of which pass runs first), so an opaque
// PNG gives exactly the pixels of the Pillow lookalike pins. What cannot be
// matched: JPEG decoding (Pillow decodes JPEG with DCT downscaling when the image is much
// larger than the model input; browsers decode at full size), and ICC colour profiles.
"use strict";

(function (root) {
  const PRECISION_BITS = 32 - 8 - 2;
  const MAX_PIXELS = 89478485; // lookalike.imaging.images.DEFAULT_MAX_PIXELS (Pillow's limit)

  const FILTERS = {
    bilinear: {
      support: 1.0,
      weight(x) {
        x = Math.abs(x);
        return x < 1.0 ? 1.0 - x : 0.0;
      },
    },
    bicubic: {
      support: 2.0,
      weight(x) {
        const a = -0.5;
        x = Math.abs(x);
        if (x < 1.0) return ((a + 2.0) * x - (a + 3.0)) * x * x + 1;
        if (x < 2.0) return (((x - 5) * x + 8) * x - 4) * a;
        return 0.0;
      },
    },
  };

  // Pillow's precompute_coeffs + normalize_coeffs_8bpc: for each output pixel, the first
  // input pixel, how many it reads, and integer weights scaled by 2^PRECISION_BITS.
  function coefficients(inSize, in0, in1, outSize, filter) {
    const scale = (in1 - in0) / outSize;
    const filterscale = Math.max(scale, 1.0);
    const support = filter.support * filterscale;
    const ksize = Math.ceil(support) * 2 + 1;
    const kk = new Float64Array(outSize * ksize);
    const bounds = new Int32Array(outSize * 2);
    for (let xx = 0; xx < outSize; xx++) {
      const center = in0 + (xx + 0.5) * scale;
      const ss = 1.0 / filterscale;
      let xmin = Math.trunc(center - support + 0.5);
      if (xmin < 0) xmin = 0;
      let xmax = Math.trunc(center + support + 0.5);
      if (xmax > inSize) xmax = inSize;
      xmax -= xmin;
      let ww = 0.0;
      const k = xx * ksize;
      for (let x = 0; x < xmax; x++) {
        const w = filter.weight((x + xmin - center + 0.5) * ss);
        kk[k + x] = w;
        ww += w;
      }
      for (let x = 0; x < xmax; x++) if (ww !== 0.0) kk[k + x] /= ww;
      bounds[xx * 2] = xmin;
      bounds[xx * 2 + 1] = xmax;
    }
    const fixed = new Int32Array(kk.length);
    const one = 1 << PRECISION_BITS;
    for (let i = 0; i < kk.length; i++) {
      fixed[i] = kk[i] < 0 ? Math.trunc(-0.5 + kk[i] * one) : Math.trunc(0.5 + kk[i] * one);
    }
    return { ksize, bounds, kk: fixed };
  }

  function clip8(sum) {
    const v = Math.floor(sum / (1 << PRECISION_BITS));
    return v < 0 ? 0 : v > 255 ? 255 : v;
  }

  // One resampling pass over `rows` rows (from row `first`) of a planar 8-bit image.
  function horizontal(src, width, channels, first, rows, outWidth, c) {
    const out = new Uint8Array(outWidth * rows * channels);
    for (let y = 0; y < rows; y++) {
      const row = (y + first) * width;
      for (let xx = 0; xx < outWidth; xx++) {
        const xmin = c.bounds[xx * 2];
        const xmax = c.bounds[xx * 2 + 1];
        const k = xx * c.ksize;
        for (let ch = 0; ch < channels; ch++) {
          let ss = 1 << (PRECISION_BITS - 1);
          for (let x = 0; x < xmax; x++) ss += src[(row + x + xmin) * channels + ch] * c.kk[k + x];
          out[(y * outWidth + xx) * channels + ch] = clip8(ss);
        }
      }
    }
    return out;
  }

  function vertical(src, width, channels, outHeight, c, shift) {
    const out = new Uint8Array(width * outHeight * channels);
    for (let yy = 0; yy < outHeight; yy++) {
      const ymin = c.bounds[yy * 2] - shift;
      const ymax = c.bounds[yy * 2 + 1];
      const k = yy * c.ksize;
      for (let xx = 0; xx < width; xx++) {
        for (let ch = 0; ch < channels; ch++) {
          let ss = 1 << (PRECISION_BITS - 1);
          for (let y = 0; y < ymax; y++) ss += src[((y + ymin) * width + xx) * channels + ch] * c.kk[k + y];
          out[(yy * width + xx) * channels + ch] = clip8(ss);
        }
      }
    }
    return out;
  }

  // Pillow's Image.resize(size, resample, box) for 8-bit L or RGB pixels (interleaved).
  function resize(pixels, width, height, channels, outWidth, outHeight, box, interpolation) {
    const filter = FILTERS[interpolation];
    if (!filter) throw new Error("unknown interpolation " + interpolation);
    const [x0, y0, x1, y1] = box;
    if (outWidth === width && outHeight === height && x0 === 0 && y0 === 0 && x1 === width && y1 === height) {
      return pixels;
    }
    const needH = outWidth !== width || x0 !== 0 || x1 !== outWidth;
    const needV = outHeight !== height || y0 !== 0 || y1 !== outHeight;
    const ch = coefficients(width, x0, x1, outWidth, filter);
    const cv = coefficients(height, y0, y1, outHeight, filter);
    // Pillow 13 (python-pillow/Pillow#9549) runs the vertical pass first when the height
    // shrinks by more than twice as many pixels as the width; the order changes the rounding.
    if (needH && needV && height > outHeight && height - outHeight > 2 * (width - outWidth)) {
      const tall = vertical(pixels, width, channels, outHeight, cv, 0);
      return horizontal(tall, width, channels, 0, outHeight, outWidth, ch);
    }
    const yFirst = cv.bounds[0];
    const yLast = cv.bounds[outHeight * 2 - 2] + cv.bounds[outHeight * 2 - 1];
    let out = pixels;
    let w = width;
    let shift = 0;
    if (needH) {
      if (needV) {
        out = horizontal(out, w, channels, yFirst, yLast - yFirst, outWidth, ch);
        shift = yFirst;
      } else {
        out = horizontal(out, w, channels, 0, height, outWidth, ch);
      }
      w = outWidth;
    }
    if (needV) out = vertical(out, w, channels, outHeight, cv, shift);
    return out;
  }

  // RGBA (straight alpha) → 8-bit L or RGB on white, as lookalike.imaging.images does it.
  function flatten(rgba, count, channels) {
    const out = new Uint8Array(count * channels);
    const div255 = (a) => {
      const t = a + 128;
      return ((t >> 8) + t) >> 8;
    };
    for (let i = 0; i < count; i++) {
      let r = rgba[i * 4];
      let g = rgba[i * 4 + 1];
      let b = rgba[i * 4 + 2];
      const a = rgba[i * 4 + 3];
      if (a !== 255) {
        r = div255(255 * (255 - a) + r * a);
        g = div255(255 * (255 - a) + g * a);
        b = div255(255 * (255 - a) + b * a);
      }
      if (channels === 1) {
        out[i] = (r * 19595 + g * 38470 + b * 7471 + 0x8000) >> 16;
      } else {
        out[i * 3] = r;
        out[i * 3 + 1] = g;
        out[i * 3 + 2] = b;
      }
    }
    return out;
  }

  // The crop box of Preprocess.resize_image (center_crop keeps the target aspect ratio).
  function cropBox(width, height, pre) {
    if (pre.resize !== "center_crop") return [0, 0, width, height];
    const [outH, outW] = pre.input_size;
    const target = outW / outH;
    let cw;
    let chh;
    if (width / height < target) {
      cw = width;
      chh = width / target;
    } else {
      cw = height * target;
      chh = height;
    }
    cw *= pre.crop_fraction;
    chh *= pre.crop_fraction;
    const left = (width - cw) / 2;
    const top = (height - chh) / 2;
    return [left, top, left + cw, top + chh];
  }

  async function decode(blob, name) {
    const what = name || blob.name || "the image";
    let bitmap;
    try {
      bitmap = await createImageBitmap(blob, {
        colorSpaceConversion: "none",
        premultiplyAlpha: "none",
        imageOrientation: "from-image",
      });
    } catch (_) {
      throw new Error(`${what} is not an image this browser can decode`);
    }
    const { width, height } = bitmap;
    if (width * height > MAX_PIXELS) {
      bitmap.close();
      throw new Error(`${what} is too large (${width}×${height} pixels)`);
    }
    const canvas = new OffscreenCanvas(width, height);
    const context = canvas.getContext("2d", { willReadFrequently: true });
    context.drawImage(bitmap, 0, 0);
    bitmap.close();
    return { rgba: context.getImageData(0, 0, width, height).data, width, height };
  }

  // A decoded image → Float32Array (C, H, W) for the model (`pre`: Preprocess.to_dict()).
  function toInput(image, pre) {
    const channels = pre.channels;
    const [outH, outW] = pre.input_size;
    const flat = flatten(image.rgba, image.width * image.height, channels);
    const box = cropBox(image.width, image.height, pre);
    const pixels = resize(flat, image.width, image.height, channels, outW, outH, box, pre.interpolation);
    const out = new Float32Array(channels * outH * outW);
    const plane = outH * outW;
    for (let c = 0; c < channels; c++) {
      // As Preprocess.image_to_array: float32 scale and offset from float64, one multiply-add.
      const scale = Math.fround(1.0 / (255.0 * pre.std[c]));
      const offset = Math.fround(-pre.mean[c] / pre.std[c]);
      for (let i = 0; i < plane; i++) {
        out[c * plane + i] = Math.fround(Math.fround(pixels[i * channels + c] * scale) + offset);
      }
    }
    return out;
  }

  root.LookalikePixels = { decode, toInput, resize, flatten };
})(window);
